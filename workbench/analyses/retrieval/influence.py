"""AttentionInfluence (Hua et al. 2025): how much a document's loss rises when the retrieval heads are
made uniform. Score = (L_masked - L_base) / L_base, L = mean next-token cross-entropy of the document.

The control (the paper's "mirror effect", Table 6): the same number of random heads made uniform, a fresh
set per document drawn from outside the top ``exclude_top`` heads (the way Wu et al.'s repository draws its
random heads), ``random_sets`` times per document."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import torch

from workbench.analyses.heads import top_heads
from workbench.analyses.retrieval.masking import per_run_seed, random_heads
from workbench.runners.hf import InputError
from workbench.seam.interventions import mask_heads


def read_documents(path: Path) -> pd.DataFrame:
    """Documents from a .txt file (one document), a folder of .txt files (one each) or JSONL (``text``
    field, optional ``id`` and ``domain``). Returns ``doc, domain, text``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"documents {path} do not exist (a .txt file, a folder of .txt files, or JSONL)")
    rows = []
    if path.is_dir():
        for file in sorted(path.glob("*.txt")):
            rows.append({"doc": file.stem, "domain": "", "text": file.read_text(encoding="utf-8", errors="replace")})
    elif path.suffix in (".jsonl", ".json"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path} line {number} is not JSON: {error}") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise InputError(f'{path} line {number}: every document needs a string "text" field')
            rows.append({"doc": str(record.get("id", number)), "domain": str(record.get("domain", "")),
                         "text": record["text"]})
    else:
        rows.append({"doc": path.stem, "domain": "", "text": path.read_text(encoding="utf-8", errors="replace")})
    rows = [r for r in rows if r["text"].strip()]
    if not rows:
        raise InputError(f"{path} holds no non-empty documents")
    return pd.DataFrame(rows)


def influence_heads(heads: pd.DataFrame, num_heads_total: int, fraction: float = 0.05, top: int | None = None):
    """The top ``fraction`` of heads by score (at least one), or the top ``top`` when given."""
    k = top if top is not None else max(1, int(math.floor(fraction * num_heads_total)))
    return top_heads(heads, k)


def document_loss(model, ids: torch.Tensor, interventions=()) -> float:
    logits = model.logits(ids, interventions=interventions)[0, :-1].float()
    return float(torch.nn.functional.cross_entropy(logits, ids[0, 1:].to(logits.device)))


def attention_influence(
    model,
    heads: pd.DataFrame,
    documents,
    *,
    fraction: float = 0.05,
    top: int | None = None,
    max_tokens: int = 1024,
    random_sets: int = 0,
    exclude_top: int = 50,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Per-document AttentionInfluence with the top retrieval heads made uniform (prefill and decode).

    ``documents``: a path (see ``read_documents``), a DataFrame with ``text``, or a list of strings.
    Returns ``doc, domain, tokens, loss_base, loss_masked, influence`` (heads in ``attrs``); with
    ``random_sets`` > 0 also ``loss_random`` and ``influence_random`` (means over the document's random
    sets) and ``random_heads`` (its sets, ``layer.head`` joined by spaces, sets by ``;``).
    """
    from tqdm.auto import tqdm

    if isinstance(documents, (str, Path)):
        documents = read_documents(Path(documents))
    elif not isinstance(documents, pd.DataFrame):
        documents = pd.DataFrame({"doc": [str(i) for i in range(len(documents))], "domain": "", "text": list(documents)})
    shape = model.shape
    chosen = influence_heads(heads, shape.num_layers * shape.num_heads, fraction, top)
    mask = mask_heads(chosen, mode="uniform", scope="both")
    excluded = top_heads(heads, len(heads))[: max(exclude_top, len(chosen))] if random_sets else []
    rows = []
    records = documents.to_dict(orient="records")
    for number, record in enumerate(tqdm(records, desc="documents", disable=not progress, leave=False)):
        ids = model.encode(record["text"], window=max_tokens) if record["text"].strip() else None
        if ids is None or ids.shape[-1] < 2:
            continue
        base = document_loss(model, ids)
        masked = document_loss(model, ids, mask)
        row = {"doc": record.get("doc", ""), "domain": record.get("domain", ""), "tokens": int(ids.shape[-1]),
               "loss_base": base, "loss_masked": masked, "influence": (masked - base) / base}
        if random_sets:
            sets = [random_heads(shape, len(chosen), per_run_seed(seed, draw, number), excluded)
                    for draw in range(random_sets)]
            losses = [document_loss(model, ids, mask_heads(s, mode="uniform", scope="both")) for s in sets]
            row["loss_random"] = sum(losses) / len(losses)
            row["influence_random"] = sum((loss - base) / base for loss in losses) / len(losses)
            row["random_heads"] = ";".join(" ".join(f"{a}.{b}" for a, b in s) for s in sets)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["heads"] = [list(h) for h in chosen]
    table.attrs["params"] = {"fraction": fraction, "top": top, "max_tokens": max_tokens, "mask": "uniform",
                             "random_sets": random_sets, "exclude_top": exclude_top, "seed": seed}
    return table
