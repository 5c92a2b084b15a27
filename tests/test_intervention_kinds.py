"""Intervention kinds are data: the lazy table ``KINDS`` maps every kind to its class, so a file of
interventions loads in any process without the caller importing the module that defines a kind."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.seam.interventions import KINDS, Intervention, intervention_class, register_intervention
from workbench.seam.spec import SpecError

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"

EXAMPLES = {  # one instance of every kind the package defines, as a file would hold it
    "uniform": {"layer": 0, "head": 1, "scope": "decode"},
    "logit_bias": {"layer": 1, "head": 0, "keys": [0], "key_range": [2, 4], "bias": -1.5},
    "scale_keys": {"layer": 0, "head": 2, "keys": [0, 1], "factor": 0.5},
    "head_gate": {"layer": 1, "head": 3, "gate": 0.0},
    "head_affine": {"layer": 0, "head": 0, "scale": [0.1, -0.2], "offset": [1.0, 0.0]},
    "head_replace": {"layer": 1, "head": 1, "vector": [0.5, 0.25]},
    "act": {"layer": 0, "head": 1, "threshold": 0.2, "beta": 0.5},
    "var": {"layer": 1, "head": 2, "p": 0.7},
    "softpag": {"layer": 0, "head": 3, "u": 0.25},
    "streaming_mix": {"layer": 1, "head": 0, "sink": 4, "recent": 8, "gate": 0.5},
}

LOAD_IN_A_FRESH_PROCESS = """
import json, sys
from workbench.seam.interventions import KINDS, interventions_from_json
defining = sorted({target.split(":")[0] for target in KINDS.values()} - {"workbench.seam.interventions"})
early = [name for name in defining if name in sys.modules]
assert not early, f"imported before any intervention was loaded: {early}"
items = interventions_from_json(open(sys.argv[1]).read())
print(json.dumps({"kinds": [item.kind for item in items], "classes": [type(item).__module__ + ":" +
      type(item).__qualname__ for item in items], "data": [item.to_dict() for item in items]}))
"""


def example_file(tmp_path) -> Path:
    path = tmp_path / "interventions.json"
    path.write_text(
        json.dumps({"interventions": [{"kind": kind, **fields} for kind, fields in EXAMPLES.items()]})
    )
    return path


def test_every_kind_has_an_example():
    assert set(EXAMPLES) == set(KINDS)


def test_an_intervention_file_of_every_kind_loads_in_a_fresh_process(tmp_path):
    """A process that imported nothing but the seam's interventions (a Ray worker, a sweep shard, the app)."""
    path = example_file(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["kinds"] == list(EXAMPLES)
    assert loaded["classes"] == [KINDS[kind] for kind in EXAMPLES]
    for kind, data in zip(EXAMPLES, loaded["data"], strict=True):
        assert Intervention.from_dict(data).to_dict() == data, kind  # and it round-trips


def _defined_kinds() -> dict[str, str]:
    """kind -> "module:Class" for every class in the package source that sets ``kind: ClassVar[str]`` and
    derives (by name) from an intervention base."""
    bases = {"Intervention", "ProbabilityEdit", "OutputEdit", "LogitBias"}
    found: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for node in classes.values():
            names = {
                base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases
            }
            if not names & (bases | set(classes)):
                continue
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and getattr(item.target, "id", None) == "kind"
                    and isinstance(item.value, ast.Constant)
                    and item.value.value != "base"
                ):
                    found[item.value.value] = f"{module}:{node.name}"
    return found


def test_the_table_names_every_kind_the_package_defines():
    defined = {kind: target for kind, target in _defined_kinds().items() if kind != "step"}
    assert defined == KINDS


def test_unknown_kinds_fail_with_the_known_ones():
    with pytest.raises(SpecError, match="unknown intervention kind 'teleport'.*streaming_mix"):
        Intervention.from_dict({"kind": "teleport", "layer": 0, "head": 0})
    with pytest.raises(SpecError, match="JSON object"):
        Intervention.from_dict(["uniform", 0, 0])


def test_a_kind_defined_outside_the_package_registers_but_cannot_take_a_packaged_name():
    from dataclasses import dataclass
    from typing import ClassVar

    from workbench.seam.interventions import HeadGate

    @register_intervention
    @dataclass(frozen=True)
    class Doubled(HeadGate):
        kind: ClassVar[str] = "test_doubled_gate"

    assert intervention_class("test_doubled_gate") is Doubled
    assert Intervention.from_dict(
        {"kind": "test_doubled_gate", "layer": 0, "head": 0, "gate": 2.0}
    ) == Doubled(0, 0, gate=2.0)

    @dataclass(frozen=True)
    class Impostor(HeadGate):
        kind: ClassVar[str] = "act"

    with pytest.raises(SpecError, match="belongs to workbench.analyses.calibration.interventions:ACT"):
        register_intervention(Impostor)
