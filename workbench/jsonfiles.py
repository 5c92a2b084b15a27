"""Atomic JSON files: a reader (a dashboard, a resumed pipeline) never sees half a file."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
