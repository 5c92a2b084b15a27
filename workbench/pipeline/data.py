"""The texts a pipeline or sweep runs on, from its ``data:`` section.

A data set is one of::

    {source: sample}                         # the bundled sample text (workbench/data/sample.txt)
    {source: path/to/file.txt}               # one text per file (.txt), or
    {source: path/to/file.jsonl, field: text}  # one text per JSON line
    {texts: ["...", "..."]}                  # inline

plus optional ``split: paragraphs | lines`` (one text per blank-line paragraph / line), ``limit: N``
(first N texts) and ``min_chars: N`` (drop shorter pieces). ``data:`` is either one such set (named
``default``) or a mapping of names to sets; steps pick one with ``data: NAME``.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.pipeline.errors import PipelineError

SET_KEYS = {"source", "texts", "split", "limit", "field", "min_chars"}


def normalise_data(section, base: Path) -> dict[str, dict]:
    """``data:`` as ``{name: set}``; raises PipelineError naming the bad key."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise PipelineError("data: must be a mapping (a data set, or names of data sets)")
    if set(section) & {"source", "texts"}:
        section = {"default": section}
    out = {}
    for name, item in section.items():
        if not isinstance(item, dict):
            raise PipelineError(f"data set {name!r} must be a mapping with 'source' or 'texts'")
        extra = sorted(set(item) - SET_KEYS)
        if extra:
            raise PipelineError(f"data set {name!r}: unknown key(s) {extra}; known: {sorted(SET_KEYS)}")
        if ("source" in item) == ("texts" in item):
            raise PipelineError(f"data set {name!r} needs exactly one of 'source' or 'texts'")
        if item.get("split", "none") not in ("none", "paragraphs", "lines"):
            raise PipelineError(f"data set {name!r}: split must be none, paragraphs or lines")
        source = item.get("source")
        if source is not None and source != "sample":
            path = Path(source)
            if not path.is_absolute():
                path = base / path
            if not path.exists():
                raise PipelineError(f"data set {name!r}: file {path} does not exist")
            item = {**item, "source": str(path)}
        if "texts" in item and not (
            isinstance(item["texts"], list) and all(isinstance(t, str) for t in item["texts"])
        ):
            raise PipelineError(f"data set {name!r}: texts must be a list of strings")
        out[str(name)] = item
    return out


def _read_source(item: dict) -> list[str]:
    source = item["source"]
    if source == "sample":
        from workbench.analyses.demo import sample_text

        return [sample_text()]
    path = Path(source)
    if path.suffix == ".jsonl":
        field = item.get("field", "text")
        texts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise PipelineError(f"{path}:{number} is not valid JSON: {error}") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise PipelineError(f"{path}:{number} has no string field {field!r}")
            texts.append(record[field])
        return texts
    return [path.read_text(encoding="utf-8", errors="replace")]


def load_texts(item: dict) -> list[str]:
    texts = list(item["texts"]) if "texts" in item else _read_source(item)
    split = item.get("split", "none")
    if split == "paragraphs":
        texts = [p.strip() for t in texts for p in t.split("\n\n")]
    elif split == "lines":
        texts = [p.strip() for t in texts for p in t.splitlines()]
    texts = [t for t in texts if t.strip() and len(t) >= int(item.get("min_chars", 1))]
    if item.get("limit") is not None:
        texts = texts[: int(item["limit"])]
    if not texts:
        raise PipelineError(f"data set {item} has no texts after splitting and filtering")
    return texts


def texts_hash(texts: list[str]) -> str:
    from workbench.store.store import content_hash

    return content_hash("texts", texts)
