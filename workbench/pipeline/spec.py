"""A head-selection pipeline file (YAML, read with ``safe_load``) and its validation.

    pipeline: demo
    model: smollm2-135m
    device: auto          # optional: auto | cpu | cuda | cuda:N   (the CLI's --device overrides it)
    dtype: auto           # optional: auto | float32 | bfloat16 | float16
    data:
      corpus: {source: sample}
      paragraphs: {source: sample, split: paragraphs}
    steps:
      - {id: capture, step: capture, data: corpus, classify: true}
      - {id: sinks, step: select, rule: {of: capture, by: sink_mass, top_k: 5}}
      - {id: masking, step: validate, heads: sinks, data: paragraphs}
      - {id: report, step: report}
    outputs: {dir: results/demo, heads: sinks}

Everything is checked by ``load_pipeline`` (structure, step names, options, references, data files)
so a bad file fails with one clear error before any step runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from workbench.pipeline.data import normalise_data
from workbench.pipeline.errors import PipelineError
from workbench.pipeline.registry import load_step

TOP_KEYS = {"pipeline", "description", "model", "device", "dtype", "data", "steps", "outputs"}
OUTPUT_KEYS = {"dir", "heads"}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class PipelineSpec:
    name: str
    model: str
    steps: list[dict]
    data: dict[str, dict] = field(default_factory=dict)
    dtype: str | None = None  # a name (auto, float32, ...); None = auto
    device: str | None = None  # a name (auto, cpu, cuda, cuda:N); None = auto; resolved where the model loads
    out: Path = Path("results/pipeline")
    heads: str | None = None  # the select step whose heads go to HEADS.json
    description: str = ""
    source: str = ""  # the YAML text, shown in the report
    base: Path = Path(".")  # the file's folder: relative paths in steps are relative to it
    implementations: dict = field(default_factory=dict, repr=False)  # step id -> Step instance

    def step(self, step_id: str) -> dict:
        for config in self.steps:
            if config["id"] == step_id:
                return config
        raise KeyError(step_id)


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pipeline file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = ""
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PipelineError(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must be a YAML mapping with 'model' and 'steps'")
    return data


def load_pipeline(path: Path, out: Path | None = None) -> PipelineSpec:
    """Read and validate a pipeline file (relative paths inside it are relative to the file)."""
    path = Path(path)
    return parse_pipeline(
        read_yaml(path), base=path.parent, name=path.stem, out=out, source=path.read_text(), where=str(path)
    )


def parse_pipeline(
    data: dict,
    base: Path = Path("."),
    name: str = "pipeline",
    out: Path | None = None,
    source: str = "",
    where: str = "FILE",
) -> PipelineSpec:
    if isinstance(data, dict) and "sweep" in data and "steps" not in data:
        raise PipelineError(
            f"{where} is a sweep file (it has 'sweep:', no 'steps:'); run it with `workbench pipeline sweep {where}`"
        )
    extra = sorted(set(data) - TOP_KEYS)
    if extra:
        raise PipelineError(f"unknown top-level key(s) {extra}; known: {sorted(TOP_KEYS)}")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise PipelineError(
            "the pipeline needs 'model:' (a name from `workbench models`, a folder or a HF id)"
        )
    device, dtype = check_runtime(data.get("device"), data.get("dtype"))
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict) or set(outputs) - OUTPUT_KEYS:
        raise PipelineError(f"outputs: must be a mapping with keys from {sorted(OUTPUT_KEYS)}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PipelineError("the pipeline needs 'steps:', a non-empty list of steps")
    spec = PipelineSpec(
        name=str(data.get("pipeline") or name),
        model=model,
        dtype=dtype,
        device=device,
        steps=[],
        data=normalise_data(data.get("data"), base),
        description=str(data.get("description") or ""),
        source=source,
        base=Path(base),
    )
    out_dir = out or outputs.get("dir") or f"results/{spec.name}"
    spec.out = Path(out_dir)
    seen: list[str] = []
    for number, raw in enumerate(steps, 1):
        if isinstance(raw, str):
            raw = {"step": raw}
        if not isinstance(raw, dict) or "step" not in raw:
            raise PipelineError(f"step {number} must be a mapping with 'step:' (the step's kind)")
        config = dict(raw)
        config.setdefault("id", str(config["step"]))
        step_id = config["id"]
        if not isinstance(step_id, str) or not ID_PATTERN.match(step_id):
            raise PipelineError(f"step {number}: id {step_id!r} must be letters, digits, '_', '-' or '.'")
        if step_id in seen:
            raise PipelineError(f"step id {step_id!r} is used twice; give each step a unique id")
        implementation = load_step(str(config["step"]))
        implementation.check(config, spec)
        for ref in implementation.inputs(config):
            if ref not in seen:
                later = " (it comes later: steps run in file order)" if ref in _ids(steps) else ""
                raise PipelineError(
                    f"step {step_id!r} reads step {ref!r}, which is not an earlier step{later}"
                )
        seen.append(step_id)
        spec.steps.append(config)
        spec.implementations[step_id] = implementation
    heads = outputs.get("heads")
    selects = [c["id"] for c in spec.steps if c["step"] == "select"]
    if heads is not None and heads not in selects:
        raise PipelineError(f"outputs.heads names {heads!r}; it must be a select step: {selects or 'none'}")
    spec.heads = heads or (selects[-1] if selects else None)
    return spec


def check_runtime(device, dtype) -> tuple[str | None, str | None]:
    """The pipeline's ``device:`` and ``dtype:`` names, checked (not resolved: the file may be checked on a
    machine without the GPU it will run on); "auto" is kept as None so keys of older pipelines don't move."""
    from workbench.devices import DeviceError, check_names

    for key, value in (("device", device), ("dtype", dtype)):
        if value is not None and not isinstance(value, str):
            raise PipelineError(f"{key}: must be a name such as auto, got {value!r}")
    try:
        check_names(device, dtype)
    except DeviceError as error:
        raise PipelineError(f"{error} (pipeline keys device:/dtype:)") from None
    normal = [None if value is None or value.strip().lower() == "auto" else value.strip().lower() for value in (device, dtype)]
    return normal[0], normal[1]


def _ids(steps) -> list[str]:
    return [str(s.get("id", s.get("step"))) if isinstance(s, dict) else str(s) for s in steps]
