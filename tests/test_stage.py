"""benchmarks/stage.py: parts that fit a device call, reassembled only when all arrived and checked."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stage_module():
    spec = importlib.util.spec_from_file_location("stage", ROOT / "benchmarks" / "stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parts_arrive_over_several_calls_and_a_cold_machine_is_named(tmp_path, capsys):
    stage = _stage_module()
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(2_500_000))  # incompressible: 3 parts of 1 MB
    (tmp_path / "essay.txt").write_text("a haystack\n" * 100)
    here, device = tmp_path / "stage", tmp_path / "device"
    manifest = stage.pack(1_000_000, [("smollm2.gguf", source), ("data/essay.txt", tmp_path / "essay.txt")], here)
    names = [part["name"] for part in manifest["parts"]]
    assert len(names) == 3 and all((here / name).stat().st_size <= 1_000_000 for name in names)

    def call(carried: list[str]) -> int:  # one device call: only the carried parts are in its .stage/
        sent = tmp_path / "sent"
        sent.mkdir(exist_ok=True)
        for old in sent.iterdir():
            old.unlink()
        (sent / "manifest.json").write_bytes((here / "manifest.json").read_bytes())
        for name in carried:
            (sent / name).write_bytes((here / name).read_bytes())
        return stage.receive(device, sent)

    assert call([names[0]]) == 3
    assert call([names[1]]) == 3
    assert f"missing {names[2]}" in capsys.readouterr().out
    # the machine went back: what it kept is gone, and the message names every part again
    for kept in device.iterdir():
        kept.unlink()
    assert call([names[2]]) == 3
    assert f"missing {names[0]}, {names[1]}" in capsys.readouterr().out
    assert call([names[0]]) == 3
    assert call([names[1]]) == 0
    assert (device / "payload" / "smollm2.gguf").read_bytes() == source.read_bytes()
    assert "WORKBENCH_SMOLLM2_GGUF" in (device / "env.sh").read_text()
    assert call([]) == 0  # later calls find it unpacked


def test_a_corrupted_part_is_dropped_and_asked_for_again(tmp_path, capsys):
    stage = _stage_module()
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(1_500_000))
    here, device = tmp_path / "stage", tmp_path / "device"
    manifest = stage.pack(1_000_000, [("smollm2.gguf", source)], here)
    first = manifest["parts"][0]["name"]
    broken = bytearray((here / first).read_bytes())
    broken[10] ^= 0xFF
    (here / first).write_bytes(bytes(broken))
    assert stage.receive(device, here) == 3
    out = capsys.readouterr().out
    assert "checksum mismatch" in out and f"missing {first}" in out


def _wheel(folder: Path, name: str) -> Path:
    """A minimal pure-python wheel of distribution ``name`` (one module)."""
    import zipfile

    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_only_the_wheels_the_machine_lacks_are_installed(tmp_path, capsys):
    """A wheel of a distribution this Python has (pytest) is carried but not installed over the image's copy."""
    stage = _stage_module()
    lacking, present = _wheel(tmp_path, "wbstagefake"), _wheel(tmp_path, "pytest")
    here, device = tmp_path / "stage", tmp_path / "device"
    stage.pack(10_000_000, [("wheels/" + lacking.name, lacking), ("wheels/" + present.name, present)], here)
    assert stage.receive(device, here) == 0
    site = device / "payload" / "site"
    assert (site / "wbstagefake.py").is_file() and not (site / "pytest.py").exists()
    assert "installed wbstagefake; the image already has pytest" in capsys.readouterr().out


def test_skip_leaves_the_named_weights_out_of_the_payload():
    stage = _stage_module()
    names = [name for name, _ in stage._payload_members(skip=("dinov2",))]
    assert "smollm2.gguf" in names and not any("dinov2" in name for name in names)
    names = [name for name, _ in stage._payload_members(skip=("dinov2", "smollm2"))]
    assert "smollm2.gguf" not in names and any(name.startswith("site/gguf/") for name in names)
