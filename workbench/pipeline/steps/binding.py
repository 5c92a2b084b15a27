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
``same_class_auroc``.
"""

from __future__ import annotations

from workbench.pipeline.errors import PipelineError
from workbench.pipeline.steps.base import Context, Step, StepOutput, option, write_parquet


class BindingStep(Step):
    kind = "binding"
    options = {
        "scenes": "train scenes (default 120; at least 8)",
        "epochs": "probe epochs (default 15)",
        "layers": "hidden-state indices (default all)",
        "head_scenes": "test scenes for the per-head AUROC (default 16; at least 1 here)",
        "ranks": "binding-subspace ranks to ablate",
        "baselines": "random-init and raw-pixel baselines (default true)",
        "seed": "scene and probe seed",
    }

    def columns(self, config: dict) -> set[str]:
        return {"layer", "head", "score", "binding_auroc", "same_class_auroc"}

    def validate(self, config: dict, pipeline) -> None:
        if option(config, "scenes", int, "an integer >= 8", 120) < 8:
            raise PipelineError(f"step {config['id']!r}: scenes must be at least 8")
        if option(config, "epochs", int, "an integer >= 1", 15) < 1:
            raise PipelineError(f"step {config['id']!r}: epochs must be at least 1")
        if option(config, "head_scenes", int, "an integer >= 1", 16) < 1:
            raise PipelineError(f"step {config['id']!r}: head_scenes must be >= 1 (the step's head table)")
        option(config, "baselines", bool, "true or false")
        option(config, "seed", int, "an integer")
        for key in ("layers", "ranks"):
            value = config.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, int) for v in value)):
                raise PipelineError(f"step {config['id']!r}: {key} must be a list of integers")

    def run(self, ctx: Context, config: dict, inputs) -> StepOutput:
        from workbench.analyses.binding import BindingConfig, run_binding
        from workbench.runners.vision import load_vision_model

        model = load_vision_model(ctx.pipeline.model)
        baselines = bool(config.get("baselines", True))
        settings = BindingConfig(
            scenes=int(config.get("scenes", 120)),
            layers=tuple(config["layers"]) if config.get("layers") is not None else None,
            seed=int(config.get("seed", 0)),
            epochs=int(config.get("epochs", 15)),
            head_scenes=int(config.get("head_scenes", 16)),
            ablation_ranks=tuple(config.get("ranks", [4, 16, 64])),
            random_baseline=baselines,
            pixel_baseline=baselines,
        )
        result = run_binding(model, settings, progress=lambda line: ctx.echo(f"  {line}"))
        summary = {k: v for k, v in result.summary.items() if k not in ("config", "seconds")}
        return StepOutput(
            head_tables={"heads": result.heads},
            arrays={"probes": result.probes, "ablation": result.ablation},
            summary=summary,
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
