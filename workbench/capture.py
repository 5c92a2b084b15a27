"""A capture: what the seam recorded in one instrumented run, with named axes, that turns into pandas.

Axes:
    row statistics   (batch, layer, head, query)   query = absolute position, prefill and decode steps in order
    key statistics   (batch, layer, head, key)     from the prefill
    pooled           (batch, layer, head, query_cell, key_cell)
    rows[position]   (batch, layer, head, key)     exact probability rows
    decode_rows      (batch, step, layer, head, key) exact last-query rows at each decode step (zero-padded)
    top_k            (batch, layer, head, query, k)

Several texts (``model.capture(["a", "b"])``) share one capture: the batch axis is the text, each text
right-padded to the longest. ``lengths`` holds each text's real token count, so positions and keys at or
past it are padding: ``head_table`` and ``to_frame`` leave them out, and ``split()`` gives one capture per
text, trimmed to its length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from workbench.adapters import ModelShape
from workbench.seam.record import LayerRecord

ROW_DIMS = ("batch", "layer", "head", "query")
NON_SINK_DISTANCE = "non_sink_distance"
"""Head-table column: the mean backward distance with attention to the sink (key 0) counted as distance 0,
i.e. the mean over queries of sum_{j >= 1} p_ij (i - j). It ranks heads by range without the sink heads
(whose mean distance is large only because key 0 is far); in tables whose spec has mean_distance and
sink_mass with sink_tokens=1. ``workbench.analyses.heads.longest_range_heads`` ranks by it."""
KEY_DIMS = ("batch", "layer", "head", "key")


@dataclass
class Capture:
    shape: ModelShape
    layers: list[int]
    heads: list[int]
    positions: np.ndarray
    row: dict[str, torch.Tensor] = field(default_factory=dict)
    key: dict[str, torch.Tensor] = field(default_factory=dict)
    pooled: torch.Tensor | None = None
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    decode_rows: torch.Tensor | None = None
    top_k: torch.Tensor | None = None
    tokens: list[str] | None = None
    meta: dict = field(default_factory=dict)
    backends: dict[int, str] = field(default_factory=dict)  # layer -> "triton", "pytorch" (or both, "+")
    lengths: list[int] | None = None  # real tokens of each text (batch item) of a padded batch; None: no padding
    names: list[str] | None = None  # a name per text (file stem, or "0", "1", ... for a list)
    batch_tokens: list[list[str]] | None = None  # the tokens of each text of a padded batch

    dims = {"row": ROW_DIMS, "key": KEY_DIMS}

    def __repr__(self) -> str:
        parts = [f"layers={len(self.layers)}", f"heads={len(self.heads)}", f"queries={len(self.positions)}"]
        if self.row:
            parts.append(f"row={sorted(self.row)}")
        if self.key:
            parts.append(f"key={sorted(self.key)}")
        if self.pooled is not None:
            parts.append(f"pooled={tuple(self.pooled.shape[-2:])}")
        if self.rows:
            parts.append(f"rows={sorted(self.rows)}")
        if self.decode_rows is not None:
            parts.append(f"decode_steps={self.decode_rows.shape[1]}")
        if self.lengths is not None:
            parts.insert(0, f"texts={len(self.lengths)}")
        return f"Capture({', '.join(parts)})"

    @property
    def backend(self) -> str:
        """The attention backend(s) that ran this capture, e.g. "triton" or "pytorch"."""
        return "+".join(sorted(set("+".join(self.backends.values()).split("+")))) if self.backends else "unknown"

    def backend_summary(self) -> str:
        """One line for people: which backend ran which layers."""
        by_backend: dict[str, list[int]] = {}
        for layer, name in sorted(self.backends.items()):
            by_backend.setdefault(name, []).append(layer)
        return "; ".join(f"{name} ({_ranges(layers)})" for name, layers in by_backend.items()) or "unknown"

    @property
    def kv_heads(self) -> list[int]:
        return [self.shape.kv_head(h) for h in self.heads]

    def statistic(self, name: str) -> torch.Tensor:
        """A row statistic (batch, layer, head, query) or key statistic (batch, layer, head, key)."""
        if name in self.row:
            return self.row[name]
        if name in self.key:
            return self.key[name]
        raise KeyError(
            f"statistic {name!r} was not captured; captured: {sorted(self.row) + sorted(self.key)}"
        )

    def to_frame(self, kind: str = "row") -> pd.DataFrame:
        """Long table: one row per (batch, layer, head, query|key) with one column per statistic."""
        source = self.row if kind == "row" else self.key
        if not source:
            return pd.DataFrame()
        axis = "query" if kind == "row" else "key"
        first = next(iter(source.values()))
        b, n_layers, n_heads, n = first.shape
        index = pd.MultiIndex.from_product(
            [range(b), self.layers, self.heads, self.positions if kind == "row" else range(n)],
            names=["batch", "layer", "head", axis],
        )
        frame = pd.DataFrame(
            {name: _numpy(value).reshape(-1) for name, value in source.items()}, index=index
        ).reset_index()
        frame.insert(3, "kv_head", frame["head"].map(self.shape.kv_head))
        if kind == "row" and self.tokens is not None and len(self.tokens) == len(self.positions):
            frame["token"] = np.tile(np.asarray(self.tokens, dtype=object), b * n_layers * n_heads)
        if self.lengths is not None:  # drop the padding of a batch of texts
            if kind == "row" and self.batch_tokens is not None:
                width = len(self.positions)
                padded = [list(t) + [""] * (width - len(t)) for t in self.batch_tokens]
                frame["token"] = np.repeat(np.asarray(padded, dtype=object), n_layers * n_heads, axis=0).reshape(-1)
            lengths = np.asarray(self.lengths)[frame["batch"].to_numpy()]
            frame = frame[frame[axis].to_numpy() < lengths].reset_index(drop=True)
            if self.names is not None:
                frame.insert(1, "text", np.asarray(self.names, dtype=object)[frame["batch"].to_numpy()])
        return frame

    def head_table(self, statistics=None, first_query: int = 1, batch: int | None = None) -> pd.DataFrame:
        """One row per (layer, head): mean of each row statistic over queries >= ``first_query``, and
        ``non_sink_distance`` (see NON_SINK_DISTANCE) when mean_distance and sink_mass were captured.

        Over several texts (``batch=None``) it is the mean over texts of each text's own table (every text
        weighs the same, whatever its length; padding is left out); ``batch=i`` is text i's table.
        ``argmax`` is excluded (a mean of indices means nothing). The method and parameters are in attrs.
        """
        names = [s for s in (statistics or self.row) if s in self.row and s != "argmax"]
        batch_size = next(iter(self.row.values())).shape[0] if self.row else 1
        keep = torch.as_tensor(self.positions >= first_query)[None].expand(batch_size, -1)  # (batch, query)
        if self.lengths is not None:
            keep = keep & (torch.as_tensor(self.positions)[None] < torch.as_tensor(self.lengths)[:, None])
        if batch is not None:
            keep = keep[batch : batch + 1]
        weight = keep.to(torch.float64)
        weight = weight / weight.sum(-1, keepdim=True)  # a mean over each text's kept queries
        records = []
        for name in names:
            value = self.row[name].to(torch.float64)
            if batch is not None:
                value = value[batch : batch + 1]
            value = torch.where(keep[:, None, None, :], value, 0.0)  # padding may hold anything
            per_text = (value * weight[:, None, None, :]).sum(-1)  # (text, layer, head)
            records.append(per_text.mean(0))  # (layer, head)
        if {"mean_distance", "sink_mass"} <= set(names) and self.meta.get("spec", {}).get("sink_tokens", 1) == 1:
            # the sink (key 0) sits at distance i from query i: take its share out of the mean distance
            distance = self.row["mean_distance"].to(torch.float64) - self.row["sink_mass"].to(
                torch.float64
            ) * torch.as_tensor(self.positions, dtype=torch.float64)
            if batch is not None:
                distance = distance[batch : batch + 1]
            distance = torch.where(keep[:, None, None, :], distance, 0.0)
            names.append(NON_SINK_DISTANCE)
            records.append((distance * weight[:, None, None, :]).sum(-1).mean(0))
        rows = []
        for li, layer in enumerate(self.layers):
            for hi, head in enumerate(self.heads):
                row = {"layer": layer, "head": head, "kv_head": self.shape.kv_head(head)}
                for name, value in zip(names, records, strict=True):
                    row[name] = float(value[li, hi])
                rows.append(row)
        table = pd.DataFrame(rows)
        table.attrs["method"] = "capture"
        table.attrs["backends"] = {str(layer): name for layer, name in self.backends.items()}
        table.attrs["params"] = {"first_query": first_query, **self.meta.get("spec", {})}
        if self.names is not None:
            table.attrs["texts"] = list(self.names) if batch is None else [self.names[batch]]
        return table

    def head_tables(self, statistics=None, first_query: int = 1) -> dict[str, pd.DataFrame]:
        """One head table per text, by name (``head_table()`` is their mean)."""
        names = self.names or [str(i) for i in range(len(self.lengths or [0]))]
        return {
            name: self.head_table(statistics, first_query=first_query, batch=index)
            for index, name in enumerate(names)
        }

    def split(self) -> list[Capture]:
        """One capture per text of a batch, each trimmed to its own length (what capturing it alone gives)."""
        batch_size = len(self.lengths) if self.lengths is not None else next(iter(self.row.values())).shape[0]
        parts = []
        for index in range(batch_size):
            length = self.lengths[index] if self.lengths is not None else len(self.positions)
            keep = self.positions < length
            part = Capture(
                shape=self.shape,
                layers=list(self.layers),
                heads=list(self.heads),
                positions=self.positions[keep],
                row={name: value[index : index + 1][..., keep] for name, value in self.row.items()},
                key={name: value[index : index + 1, ..., :length] for name, value in self.key.items()},
                top_k=None if self.top_k is None else self.top_k[index : index + 1][..., keep, :],
                meta=dict(self.meta),
                backends=dict(self.backends),
            )
            if self.batch_tokens is not None:
                part.tokens = list(self.batch_tokens[index])
            if self.names is not None:
                part.meta["text"] = self.names[index]
            parts.append(part)
        return parts

    @classmethod
    def concatenate(cls, captures: list[Capture]) -> Capture:
        """Batches of texts -> one capture; row statistics, key statistics and top-k are padded to the
        longest text (``lengths`` says where each text ends). Pooled maps and exact rows do not combine."""
        first = captures[0]
        width = max(len(c.positions) for c in captures)

        def pad(tensor, axis_from_end):
            missing = width - tensor.shape[-axis_from_end]
            return torch.nn.functional.pad(tensor, (0, 0) * (axis_from_end - 1) + (0, missing))

        lengths, names, tokens = [], [], []
        for capture in captures:
            batch_size = next(iter(capture.row.values())).shape[0] if capture.row else 1
            lengths += capture.lengths or [len(capture.positions)] * batch_size
            names += capture.names or [str(len(names) + i) for i in range(batch_size)]
            tokens += capture.batch_tokens or [capture.tokens or []] * batch_size
        backends = {}
        for capture in captures:
            for layer, name in capture.backends.items():
                backends[layer] = "+".join(sorted(set(backends.get(layer, name).split("+")) | set(name.split("+"))))
        return cls(
            shape=first.shape,
            layers=list(first.layers),
            heads=list(first.heads),
            positions=np.arange(width),
            row={n: torch.cat([pad(c.row[n], 1) for c in captures]) for n in first.row},
            key={n: torch.cat([pad(c.key[n], 1) for c in captures]) for n in first.key},
            top_k=None if first.top_k is None else torch.cat([pad(c.top_k, 2) for c in captures]),
            meta=dict(first.meta),
            backends=backends,
            lengths=lengths,
            names=names,
            batch_tokens=tokens,
        )

    @classmethod
    def from_records(cls, shape: ModelShape, records: dict[int, list[LayerRecord]], meta=None) -> Capture:
        """One capture from a session's records (layer -> one ``LayerRecord`` per call, prefill then
        decode steps): row statistics and top-k concatenate over calls along the query axis; key
        statistics and the pooled map come from each layer's prefill; exact rows by position."""
        if not records:
            raise ValueError("no records: nothing was captured")
        layers = sorted(records)
        calls = [records[layer] for layer in layers]  # [layer][call]
        first = calls[0]
        capture = cls(
            shape=shape,
            layers=layers,
            heads=list(first[0].heads),
            positions=np.asarray([p for call in first for p in call.positions]),
            meta=meta or {},
            backends={layer: "+".join(sorted({c.backend for c in records[layer]})) for layer in layers},
        )

        def stacked(per_layer) -> torch.Tensor:  # one tensor per layer -> (batch, layer, ...) on the CPU
            return torch.stack(per_layer, dim=1).cpu()

        for name in first[0].row:
            capture.row[name] = stacked([torch.cat([c.row[name] for c in per], dim=-1) for per in calls])
        prefill = [next((c for c in per if c.has_key_pass), None) for per in calls]
        if all(p is not None and p.key is not None for p in prefill):
            for name in prefill[0].key:
                capture.key[name] = stacked([p.key[name] for p in prefill])
        if all(p is not None and p.pooled is not None for p in prefill):
            capture.pooled = stacked([p.pooled for p in prefill])
        if first[0].top_k is not None:
            k = min(c.top_k.shape[-1] for per in calls for c in per)
            capture.top_k = stacked([torch.cat([c.top_k[..., :k] for c in per], dim=-2) for per in calls])
        for position in sorted({p for per in calls for c in per for p in c.rows}):
            found = [next((c.rows[position] for c in per if position in c.rows), None) for per in calls]
            if all(f is not None for f in found):
                capture.rows[position] = stacked(found)
        steps = [[c.decode_row for c in per if c.decode_row is not None] for per in calls]
        if steps[0]:
            width = max(row.shape[-1] for per_layer in steps for row in per_layer)
            padded = [
                torch.stack([torch.nn.functional.pad(r, (0, width - r.shape[-1])) for r in per_layer], dim=1)
                for per_layer in steps
            ]  # each (batch, step, head, key)
            capture.decode_rows = torch.stack(padded, dim=2).cpu()
        return capture


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> "layers 0-2, 5"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return "layers " + ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _numpy(value: torch.Tensor):
    """A statistic as numpy on the CPU; half precision (which numpy lacks) widened to float32."""
    value = value.detach().cpu()
    return (value.float() if value.dtype in (torch.bfloat16, torch.float16) else value).numpy()
