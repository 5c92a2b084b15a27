"""Make this source tree importable for a benchmark script run as ``python3 benchmarks/NAME.py``.

Where the package is installed this changes nothing. On a machine without it (the lent GPU), it puts the
repository on ``sys.path`` and links ``workbench_kernels`` to the folder ``kernels/`` in a temporary
folder, as ``benchmarks/gpu_env.sh`` does for shell scripts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def enable() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("workbench_kernels") is not None:
        return
    links = Path(tempfile.gettempdir()) / "workbench-src"
    links.mkdir(exist_ok=True)
    link = links / "workbench_kernels"
    if not link.exists():
        os.symlink(ROOT / "kernels", link)
    sys.path.insert(1, str(links))


enable()
