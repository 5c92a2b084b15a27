"""``binding``: object binding in a ViT (IsSameObject probes per layer, per-head attention AUROC;
workbench.analyses.binding). The pipeline's ``model`` is a vision model (``dinov2-s14``, ``tiny-vit-*``).

    - id: binding
      step: binding
      scenes: 48            # train scenes (test scenes: half as many)
      epochs: 8             # probe epochs
      layers: null          # hidden-state indices (default all)
      head_scenes: 8        # test scenes whose attention maps give the per-head AUROC
      ranks: [4, 16]        # binding-subspace ranks to ablate ([] = skip)
      baselines: true       # random-init network and raw-pixel baselines

Head table: ``score`` = ``binding_auroc`` (same vs different object, different-class pairs),
``same_class_auroc``. ``workbench binding`` runs the same Step; an option left out keeps
``BindingConfig``'s default.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.options import OptionError, StepOptions, flag, help_field
from workbench.pipeline.steps.base import Context, Step, StepOutput, write_parquet


@dataclass(frozen=True, kw_only=True)
class BindingOptions(StepOptions):
    layers: tuple[int, ...] | None = help_field(None, "hidden-state indices, comma-separated (0 = embeddings; default all)")
    scenes: int | None = help_field(None, "train scenes (test scenes: half as many; default 120; at least 8)")
    seed: int | None = help_field(None, "scene and probe seed (default 0)")
    epochs: int | None = help_field(None, "probe epochs, early stopping on held-out train scenes (default 15)")
    head_scenes: int | None = help_field(None, "test scenes for per-head attention AUROC (0 = skip; default 16)")
    probes: tuple[str, ...] | None = help_field(None, "pair probes to train (default linear,diagonal,quadratic,lowrank)")
    ranks: tuple[int, ...] | None = help_field(None, "binding-subspace ranks to ablate ('' = skip; default 4,16,64)")
    baselines: bool | None = help_field(None, "random-init network and raw-pixel baselines (default on)")

    def config(self):
        from workbench.analyses.binding import BindingConfig

        given = {"scenes": self.scenes, "layers": self.layers, "seed": self.seed, "epochs": self.epochs,
                 "probes": self.probes, "head_scenes": self.head_scenes, "ablation_ranks": self.ranks,
                 "random_baseline": self.baselines, "pixel_baseline": self.baselines}  # fmt: skip
        return BindingConfig(**{k: v for k, v in given.items() if v is not None})


class BindingStep(Step):
    kind = "binding"
    record_kind = "binding"
    Options = BindingOptions

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "score", "binding_auroc", "same_class_auroc"}

    def validate(self, config: dict, pipeline) -> None:
        super().validate(config, pipeline)
        if config.get("head_scenes") == 0:
            raise PipelineError(f"step {config['id']!r}: head_scenes must be >= 1 (the step's head table)")

    def validate_options(self, o: BindingOptions) -> None:
        from workbench.analyses.binding.probes import PROBES

        config = o.config()
        if config.scenes < 8:
            raise OptionError(f"{flag('scenes')} must be at least 8 (got {config.scenes}): probes need train, "
                              "validation and test scenes")  # fmt: skip
        if config.epochs < 1:
            raise OptionError(f"{flag('epochs')} must be at least 1, got {config.epochs}")
        if config.head_scenes < 0:
            raise OptionError(f"{flag('head_scenes')} must be >= 0, got {config.head_scenes}")
        unknown = [k for k in config.probes if k not in PROBES]
        if unknown or not config.probes:
            raise OptionError(f"unknown probe(s) {unknown or list(config.probes)}; choose from {', '.join(PROBES)}")

    def execute(self, ctx: Context, o: BindingOptions, inputs) -> StepOutput:
        from workbench.analyses.binding import run_binding
        from workbench.devices import resolve_runtime
        from workbench.runners.vision import load_vision_model

        where = ctx.where or resolve_runtime(o.device, o.dtype)
        model = load_vision_model(o.model, device=where.device, dtype=where.dtype)
        ctx.loaded = model  # the runner records where this model ran
        top = model.shape.num_layers
        bad = [layer for layer in o.layers or () if not 0 <= layer <= top]
        if bad:
            raise OptionError(f"layer(s) {bad} out of range: {model.name} has hidden states 0..{top} (0 = embeddings)")
        config = o.config()
        ctx.echo(f"{model}")
        result = run_binding(model, config, progress=lambda line: ctx.echo(f"  {line}"))
        scene_hash = hashlib.sha256(json.dumps(result.summary["scene_config"], sort_keys=True).encode()).hexdigest()
        return StepOutput(
            head_tables={"heads": result.heads} if len(result.heads) else {},
            arrays={"probes": result.probes, "ablation": result.ablation, "scenes": result.scenes},
            summary={k: v for k, v in result.summary.items() if k != "config"},
            artifacts={"summary": result.summary, "heads": result.heads},
            input_hash=scene_hash[:16],
            params=config.to_dict(),
        )

    def materialize(self, ctx: Context, config: dict, output: StepOutput, inputs):
        return [write_parquet(output.table("heads"), ctx.out / f"{config['id']}.parquet")]

    def figures(self, config: dict, output: StepOutput) -> list:
        import plotly.express as px

        from workbench.plots import head_heatmap

        figures = [
            head_heatmap(output.table("heads"), "binding_auroc", title=f"{config['id']}: binding AUROC")
        ]
        probes = output.table("probes")
        if {"layer", "probe", "same_class_accuracy"} <= set(probes.columns):
            figures.append(
                px.line(
                    probes,
                    x="layer",
                    y="same_class_accuracy",
                    color="probe",
                    markers=True,
                    title=f"{config['id']}: IsSameObject probe accuracy (same-class pairs) by layer",
                )  # fmt: skip
            )
        return figures
