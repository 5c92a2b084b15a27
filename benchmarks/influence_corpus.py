"""Build the mixed-domain corpus the AttentionInfluence reproduction scores (docs/results/4-retrieval.md §5).

    python benchmarks/influence_corpus.py --out /tmp/influence/docs.jsonl [--per-domain 200]

Three domains, as the paper compares scores only within a domain (general, math, code), ``--per-domain``
documents each, every one long enough to fill 512 SmolLM2 tokens:

* ``general``: the NIAH essays (``../shared/data/niah/essays``, Paul Graham) cut into pieces of at least
  ``--chars`` characters at line ends;
* ``math``: GSM8K test problems with their worked answers (``../shared/data/gsm8k/test.jsonl``), consecutive
  problems joined until a document has ``--chars`` characters;
* ``code``: modules of this interpreter's standard library (no tests, no idlelib), from the first top-level
  ``def``/``class`` on, ``--chars`` x 1.5 characters (code packs fewer characters into a token).

Each domain's candidates are taken in a fixed order and thinned evenly to ``--per-domain``. The corpus is
not committed (2-3 MB): this script rebuilds it, and the manifest beside ``--out`` gives its sha256, the
Python version (the code domain depends on it) and the counts. The scores' committed Parquet names the
sha256 of the documents it read (the run's input hash).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import sysconfig
from pathlib import Path

DATA = Path(os.environ.get("WORKBENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def general(data: Path, chars: int) -> list[dict]:
    docs = []
    for path in sorted((data / "niah" / "essays").glob("*.txt")):
        piece, part = [], 0  # the essays' paragraphs are not separated by blank lines: cut at line ends
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            piece.append(line)
            if sum(map(len, piece)) >= chars:
                docs.append({"id": f"{path.stem}-{part}", "domain": "general", "text": "\n".join(piece)})
                piece, part = [], part + 1
    return docs


def math(data: Path, chars: int) -> list[dict]:
    docs, piece, first = [], [], 0
    lines = (data / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        record = json.loads(line)
        piece.append(f"Question: {record['question']}\nAnswer: {record['answer']}")
        if sum(map(len, piece)) >= chars:
            docs.append({"id": f"gsm8k-{first}-{number}", "domain": "math", "text": "\n\n".join(piece)})
            piece, first = [], number + 1
    return docs


def code(chars: int) -> list[dict]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if {"test", "tests", "idlelib", "site-packages", "__pycache__"} & set(relative.parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        start = re.search(r"^(def|class) ", text, flags=re.M)
        if start is None or len(text) - start.start() < int(chars * 1.5):
            continue
        body = text[start.start() : start.start() + int(chars * 1.5)]
        docs.append({"id": str(relative), "domain": "code", "text": body})
    return docs


def thin(docs: list[dict], count: int) -> list[dict]:
    """``count`` documents spread evenly over ``docs`` (all of them when there are fewer)."""
    if len(docs) <= count:
        return docs
    return [docs[i * len(docs) // count] for i in range(count)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="docs.jsonl to write (a manifest goes beside it)")
    p.add_argument("--per-domain", type=int, default=200)
    p.add_argument("--chars", type=int, default=2600, help="at least this many characters per document")
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default $WORKBENCH_DATA)")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"no {args.data}: this script reads ../shared/data (NIAH essays, GSM8K) beside the checkout")
    domains = {"general": general(args.data, args.chars), "math": math(args.data, args.chars),
               "code": code(args.chars)}
    chosen = {name: thin(docs, args.per_domain) for name, docs in domains.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(doc, ensure_ascii=False) + "\n" for docs in chosen.values() for doc in docs)
    args.out.write_text(text, encoding="utf-8")
    manifest = {
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "python": platform.python_version(),
        "candidates": {name: len(docs) for name, docs in domains.items()},
        "documents": {name: len(docs) for name, docs in chosen.items()},
        "chars": args.chars,
        "command": "python benchmarks/influence_corpus.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.with_suffix(".manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
