"""Texts from files: one file, or every ``*.txt`` of a folder in name order."""

from __future__ import annotations

from pathlib import Path


def read_texts(path: str | Path) -> dict[str, str]:
    """{name: text}: a folder gives each ``*.txt`` in it (sorted, named by file stem), a file itself.

    Feed the result to ``model.capture(...)`` for one head table per text plus their mean.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give a UTF-8 text file or a folder of *.txt files")
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"the folder {path} has no *.txt files")
    texts = {}
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            from workbench.runners.hf import InputError

            raise InputError(f"the text file {file} is empty")
        texts[file.stem] = text
    return texts


def read_text(path: str | Path) -> str:
    """One UTF-8 text file (errors replaced); FileNotFoundError if missing, InputError if empty."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"text file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        from workbench.runners.hf import InputError

        raise InputError(f"the text file {path} is empty")
    return text
