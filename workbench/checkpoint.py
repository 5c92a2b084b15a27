"""Finished units of a long job (one NIAH run, one evaluation item), kept so a rerun continues where an
interrupted one stopped.

An append-only JSONL file: one ``{"unit": key, "record": {...}}`` line per finished unit, flushed and
fsynced before the next unit starts. A line cut short by a kill is ignored on reading (that unit is simply
done again). The file's name carries a hash of everything that decides the results (the caller's job), so
a changed option starts a new file instead of mixing units of two different jobs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class UnitLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._done: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._done[str(entry["unit"])] = entry["record"]
                except (ValueError, KeyError, TypeError):
                    continue  # the last line of a killed run may be cut short

    def __repr__(self) -> str:
        return f"UnitLog({str(self.path)!r}, done={len(self._done)})"

    def __len__(self) -> int:
        return len(self._done)

    def get(self, unit: str) -> dict | None:
        """The record of a finished unit, or None."""
        return self._done.get(unit)

    def add(self, unit: str, record: dict) -> None:
        """Record one finished unit (durably: flushed and fsynced)."""
        line = json.dumps({"unit": unit, "record": record})  # key order kept: it is the columns' order
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            if handle.tell() and not self._ends_with_newline():
                handle.write("\n")  # a killed writer's partial line stays on its own line
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._done[unit] = record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def remove(self) -> None:
        """Forget the units (the job's result is recorded elsewhere now)."""
        self.path.unlink(missing_ok=True)
        self._done.clear()


class TrainingCheckpoint:
    """The state of a training loop after its last finished optimiser step, in one safetensors file
    (tensors, plus the loop's JSON state in the file's metadata; no pickle), replaced atomically after
    each step. ``load`` gives ``(state, tensors)`` or None; a damaged file counts as none."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"TrainingCheckpoint({str(self.path)!r})"

    def load(self):
        from safetensors import safe_open

        if not self.path.exists():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                state = json.loads(handle.metadata()["state"])
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except Exception:  # cut short by a kill before the rename cannot happen, but a damaged copy can
            return None
        return state, tensors

    def save(self, state: dict, tensors: dict) -> None:
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"state": json.dumps(state)},
        )
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
