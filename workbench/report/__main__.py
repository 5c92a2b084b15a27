"""python -m workbench.report docs [--root docs/results] [--check]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.report import DEFAULT_ROOT, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.report")
    parser.add_argument("what", choices=["docs"], help="render findings.json and the docs' tables")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the results folder (docs/results)")
    parser.add_argument("--check", action="store_true", help="only list files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale(args.root)
        for path in paths:
            print(f"stale: {path} (run: python -m workbench.report docs)")
        return 1 if paths else 0
    for path in write(args.root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
