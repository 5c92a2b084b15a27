"""Head tables and the HEADS.json format shared by every analysis.

A head table is a DataFrame with columns ``layer, head, score`` (plus method-specific columns), sorted
by score (highest first), with ``attrs["method"]`` and ``attrs["params"]``. HEADS.json is
``{"model", "method", "params", "heads": [{"layer", "head", "score", ...}, ...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workbench.seam.spec import SpecError


def make_head_table(rows, method: str, params: dict | None = None, score: str = "score") -> pd.DataFrame:
    table = pd.DataFrame(rows)
    if score != "score":
        table["score"] = table[score]
    table = table.sort_values(["score", "layer", "head"], ascending=[False, True, True]).reset_index(
        drop=True
    )
    table.attrs["method"] = method
    table.attrs["params"] = dict(params or {})
    return table


def heads_json(
    table: pd.DataFrame, model: str, method: str | None = None, params: dict | None = None
) -> dict:
    method = method or table.attrs.get("method", "unknown")
    params = params if params is not None else table.attrs.get("params", {})
    heads = []
    for record in table.to_dict(orient="records"):
        item = {"layer": int(record["layer"]), "head": int(record["head"]), "score": float(record["score"])}
        for key, value in record.items():
            if key not in item and isinstance(value, (int, float, str, bool)) and not pd.isna(value):
                item[key] = value.item() if hasattr(value, "item") else value
        heads.append(item)
    return {"model": model, "method": method, "params": params, "heads": heads}


def write_heads_json(
    path: Path, table: pd.DataFrame, model: str, method: str | None = None, params=None
) -> dict:
    data = heads_json(table, model, method, params)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
    return data


def read_heads_json(path: Path) -> pd.DataFrame:
    """Load HEADS.json into a head table (data only; validated)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"heads file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SpecError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("heads"), list):
        raise SpecError(f"{path} is not a HEADS.json file: expected an object with a 'heads' list")
    for item in data["heads"]:
        if not isinstance(item, dict) or not {"layer", "head", "score"} <= set(item):
            raise SpecError(f"{path}: every head needs layer, head and score; got {item!r}")
    table = make_head_table(data["heads"], data.get("method", "unknown"), data.get("params", {}))
    table.attrs["model"] = data.get("model")
    return table


def top_heads(table: pd.DataFrame, k: int) -> list[tuple[int, int]]:
    return [(int(r.layer), int(r.head)) for r in table.head(k).itertuples()]


def longest_range_heads(table: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The ``k`` heads that attend farthest back, sink excluded: the largest ``non_sink_distance`` (the mean
    distance with the sink's share counted as 0; a sink head's mean distance is large only because key 0 is
    far). ``table`` is a capture's head table with mean_distance and sink_mass."""
    from workbench.capture import NON_SINK_DISTANCE

    if NON_SINK_DISTANCE not in table:
        raise SpecError(
            f"the head table has no {NON_SINK_DISTANCE!r} column: capture mean_distance and sink_mass "
            "(with sink_tokens=1), e.g. the default CaptureSpec()"
        )
    return table.nlargest(k, NON_SINK_DISTANCE)
