"""Interventions the store already holds, as data: calibrations (``summary["interventions"]``), NIAH
masks (``params["mask"]``) and "mask the top K heads" of any stored head table."""

from __future__ import annotations

from dataclasses import dataclass

from workbench_app import data


@dataclass(frozen=True)
class Source:
    """One stored intervention set: where it came from and its JSON list of interventions."""

    label: str
    run_id: str
    model: str
    items: tuple[dict, ...] = ()
    table: str | None = None  # head-table masks are built when K is chosen

    def interventions(
        self, k: int = 0, mode: str = "uniform", scope: str = "both", metric: str = "score"
    ) -> list:
        from workbench.analyses.heads import top_heads
        from workbench.seam.interventions import Intervention, mask_heads

        if self.table is not None:
            table = data.head_table(self.run_id, self.table)
            if metric not in table.columns:
                raise data.Unavailable(
                    f"head table {self.table!r} of run {self.run_id} has no column {metric!r}"
                )
            ranked = table.sort_values(metric, ascending=False)
            return mask_heads(top_heads(ranked, k), mode=mode, scope=scope)
        try:
            return [Intervention.from_dict(dict(item)) for item in self.items]
        except Exception as error:
            raise data.Unavailable(
                f"run {self.run_id}: its stored interventions cannot be loaded ({error})"
            ) from None


def _freeze(items) -> tuple[dict, ...]:
    return tuple(dict(i) for i in items if isinstance(i, dict))


def sources() -> list[Source]:
    """Every intervention set in the store, newest runs first."""
    found: list[Source] = []
    runs = data.runs()
    for _, row in runs.iterrows():
        run_id, kind, model = row["run_id"], row["kind"], row["model"]
        params = data.parse_json(row["params"])
        try:
            info = data.summary(run_id)
        except data.Unavailable:
            continue
        stored = info.get("interventions") or params.get("interventions")
        if isinstance(stored, list) and stored:
            found.append(
                Source(f"{kind} {run_id}: {len(stored)} interventions", run_id, model, _freeze(stored))
            )
        mask = params.get("mask")
        if isinstance(mask, dict) and mask.get("heads") and mask.get("mode") in ("uniform", "zero"):
            from workbench.seam.interventions import mask_heads

            items = [
                i.to_dict()
                for i in mask_heads(
                    [tuple(h) for h in mask["heads"]], mask["mode"], mask.get("scope", "both")
                )
            ]
            found.append(
                Source(
                    f"{kind} {run_id}: {mask.get('kind')} mask of {len(items)} heads ({mask['mode']}, {mask.get('scope')})",
                    run_id,
                    model,
                    _freeze(items),
                )
            )
    for _, row in runs.iterrows():
        if not data.has_head_tables(row["run_id"]):
            continue
        for name in data.head_table_names(row["run_id"]):
            found.append(
                Source(
                    f"mask top-K heads of {row['kind']} {row['run_id']} / {name}",
                    row["run_id"],
                    row["model"],
                    table=name,
                )
            )
    return found
