"""Train a tiny ViT on procedural scenes: supervised, MAE-style or DINO-style (vision.md §3.4, scaled down).

    python3 tools/train_tiny_vit.py --objective dino --seed 0 --minutes 4 --out DIR   # workbench importable
    bash benchmarks/gpu_train_tiny.sh DIR      # all six (3 objectives x seeds 0, 1) at once on one GPU

Scenes are rendered on the fly on the training device (training seeds >= 10**9 never meet the probe scenes,
whose seeds are small); half of each batch comes from an easier scene configuration (EASY_SCENES). With
``--minutes`` the step count is fixed after a throughput calibration on steps 20-60 (a fixed-length
prelude of the schedule) and written into the checkpoint with the exact command (``--steps N --prelude
60``) that repeats the run; the learning-rate, weight-decay and EMA schedules follow steps, not the clock.
``--max-minutes`` / ``--deadline`` stop a run at a wall-clock cap and still save it (``--stop-after``
in the command). Only the encoder is saved (fp16, ``tiny_vit_model.save_checkpoint``); copy the files into
``workbench/data/vit_checkpoints/`` to ship them (the library registers every file there as a model name).

A tool, not part of the library: the wheel holds the checkpoints, not the training.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tiny_vit_model import TinyViT, _Block, save_checkpoint, tiny_config_dict  # this folder (tools/)
from torch import nn

from workbench.analyses.binding.scenes import (
    GENERATOR_VERSION,
    NUM_CLASSES,
    make_scenes,
    scene_config_for,
    texture_bank,
)

TRAIN_SCENES = scene_config_for(64)
# Half of every training batch: scenes with a low-level foothold (six distinct textures per scene, none shared
# with the background, single-part objects, strong part/surround contrast). On TRAIN_SCENES alone, built to
# defeat low-level shortcuts, a ViT from scratch found nothing to start from: supervised losses stayed at
# their prior entropy and DINO drifted to the uniform output. The probes still use the standard scenes.
EASY_SCENES = replace(
    TRAIN_SCENES,
    palette_size=6,
    share_background_texture=0.0,
    multipart_fraction=0.0,
    contrast_threshold=0.25,
)
EASY_FRACTION = 0.5
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TRAIN_SEED_BASE = 10**9


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images - MEAN.to(images.device)) / STD.to(images.device)


def random_crops(images, size, scale, generator, flip=True):
    """Random resized crops (area fraction in ``scale``, aspect 3/4..4/3) resampled to ``size``."""
    b, device = images.shape[0], images.device
    area = torch.empty(b, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(b, device=device).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - width)
    cy = (torch.rand(b, device=device, generator=generator) * 2 - 1) * (1 - height)
    sign = torch.where(torch.rand(b, device=device, generator=generator) < 0.5, -1.0, 1.0) if flip else 1.0
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = width * sign
    theta[:, 1, 1] = height
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(images, generator, strength=0.3):
    b, device = images.shape[0], images.device
    gain = 1 + (torch.rand(b, 3, 1, 1, device=device, generator=generator) * 2 - 1) * strength
    gray = torch.rand(b, 1, 1, 1, device=device, generator=generator) < 0.2
    out = (images * gain).clamp(0, 1)
    return torch.where(gray, out.mean(1, keepdim=True).expand_as(out), out)


def class_fractions(scenes, patch: int) -> torch.Tensor:
    """(B, N, 1 + C) share of each patch's pixels that are background (0) or belong to an object of class c
    (1 + c), patches row-major like the tokens. An object's second part (another shape) carries the
    object's class, as a hat is labelled "person" in semantic segmentation."""
    object_class = (
        torch.cat([torch.full_like(scenes.classes[:, :1], -1), scenes.classes], 1) + 1
    )  # instance id -> label
    pixel_class = object_class.gather(1, scenes.instance.flatten(1)).view_as(scenes.instance)
    one_hot = F.one_hot(pixel_class, NUM_CLASSES + 1).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(one_hot, patch).flatten(2).transpose(1, 2)


class Supervised(nn.Module):
    """Per-patch shape class (semantic segmentation, 8 classes + background) from the patch tokens.

    A class label says nothing about *which* instance a patch belongs to (two stars get the same label),
    so this is the supervised "class, not object" model of the comparison. Soft targets: each patch's pixel
    shares. Flip and mild colour jitter only. (The earlier image-level target, "class of the largest
    visible object" from the cls token after a 0.6-1.0 crop, never left its prior entropy in 2450 steps x
    256 scenes on the H200: the largest object is often occluded, cropped or dominated by its second part.)
    """

    def __init__(self, encoder: TinyViT):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, NUM_CLASSES + 1)

    def loss(self, scenes, generator, progress):
        flip = torch.rand(len(scenes), device=scenes.images.device, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], scenes.images.flip(-1), scenes.images)
        target = class_fractions(scenes, self.encoder.patch)  # (B, N, 9)
        grid = self.encoder.grid
        flipped = target.view(-1, grid, grid, NUM_CLASSES + 1).flip(2).reshape_as(target)
        target = torch.where(flip[:, None, None], flipped, target)
        logits = self.head(self.encoder(normalize(colour_jitter(images, generator, 0.2)))[:, 1:]).float()
        loss = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
        with torch.no_grad():
            prior = target.mean((0, 1))  # chance: the batch's class shares, everywhere
            chance = -(target * prior.clamp_min(1e-8).log()).sum(-1).mean()
            majority = target.argmax(-1)
            accuracy = (logits.argmax(-1) == majority).float().mean()
            objects = majority > 0
            object_accuracy = ((logits.argmax(-1) == majority) & objects).sum() / objects.sum().clamp_min(1)
        return loss, {
            "accuracy": float(accuracy),
            "object_patch_accuracy": float(object_accuracy),
            "chance_loss": float(chance),
            "chance_accuracy": float((majority == prior.argmax()).float().mean()),
        }


class MAE(nn.Module):
    """Masked autoencoding: 75 % of patches hidden, 2-block decoder (d=128), normalised-pixel loss."""

    def __init__(self, encoder: TinyViT, decoder_dim: int = 128, mask_ratio: float = 0.75):
        super().__init__()
        self.encoder, self.mask_ratio = encoder, mask_ratio
        n, p = encoder.grid**2, encoder.patch
        self.project = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.positions = nn.Parameter(torch.randn(1, n + 1, decoder_dim) * 0.02)
        self.blocks = nn.ModuleList([_Block(decoder_dim, 4, 4, 1.0, 1e-6) for _ in range(2)])
        self.norm = nn.LayerNorm(decoder_dim)
        self.predict = nn.Linear(decoder_dim, p * p * 3)

    def loss(self, scenes, generator, progress):
        images = random_crops(scenes.images, 64, (0.35, 1.0), generator)
        pixels = normalize(images)
        b, n, p = pixels.shape[0], self.encoder.grid**2, self.encoder.patch
        keep_count = int(round(n * (1 - self.mask_ratio)))
        order = torch.rand(b, n, device=pixels.device, generator=generator).argsort(1)
        keep, hidden = order[:, :keep_count], order[:, keep_count:]
        encoded = self.project(self.encoder(pixels, keep=keep))  # (B, 1 + keep, dd)
        tokens = self.mask_token.expand(b, n, -1).to(encoded.dtype).clone()
        tokens.scatter_(1, keep[..., None].expand(-1, -1, tokens.shape[-1]), encoded[:, 1:])
        x = torch.cat([encoded[:, :1], tokens], 1) + self.positions
        for block in self.blocks:
            x = block(x)
        predicted = self.predict(self.norm(x[:, 1:]))  # (B, N, p*p*3)
        target = F.unfold(pixels, p, stride=p).transpose(1, 2)  # (B, N, 3*p*p)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        error = ((predicted - target) ** 2).mean(-1)
        loss = error.gather(1, hidden).mean()
        return loss, {}


class DINOHead(nn.Module):
    def __init__(self, dim: int, out_dim: int = 256, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad = False

    def forward(self, x):
        return self.last(F.normalize(self.mlp(x), dim=-1))


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


class DINO(nn.Module):
    """Self-distillation: EMA teacher on 2 global 64 px crops, student on those + 4 local 32 px crops.

    256 prototypes and a constant teacher temperature of 0.04 (DINO's default). The earlier recipe (2048
    prototypes, teacher temperature warmed up to 0.07) collapsed to the uniform output: its per-sample
    teacher entropy climbed with the temperature to ~7.2 of ln 2048 = 7.62. Monitor ``teacher_entropy``
    (mean per-sample entropy; near ln K = uniform collapse) and ``teacher_mean_entropy`` (entropy of the
    batch-mean distribution; near 0 = one-prototype collapse); healthy is low per-sample, high mean.
    """

    teacher_temp = 0.04
    student_temp = 0.1

    def __init__(self, encoder: TinyViT, out_dim: int = 256):
        super().__init__()
        self.encoder, self.head = encoder, DINOHead(encoder.dim, out_dim)
        self.teacher = TinyViT(encoder.config)
        self.teacher_head = DINOHead(encoder.dim, out_dim)
        self.teacher.load_state_dict(encoder.state_dict())
        self.teacher_head.load_state_dict(self.head.state_dict())
        for param in list(self.teacher.parameters()) + list(self.teacher_head.parameters()):
            param.requires_grad = False
        self.register_buffer("center", torch.zeros(1, out_dim))

    def loss(self, scenes, generator, progress):
        images = scenes.images
        globals_ = [
            colour_jitter(random_crops(images, 64, (0.4, 1.0), generator), generator) for _ in range(2)
        ]
        locals_ = [
            colour_jitter(random_crops(images, 32, (0.1, 0.4), generator), generator) for _ in range(4)
        ]
        with torch.no_grad():
            teacher_out = self.teacher_head(self.teacher(normalize(torch.cat(globals_)))[:, 0]).float()
            teacher_prob = F.softmax((teacher_out - self.center) / self.teacher_temp, dim=-1).chunk(2)
        student = [self.head(self.encoder(normalize(torch.cat(globals_)))[:, 0])]
        student.append(self.head(self.encoder(normalize(torch.cat(locals_)))[:, 0]))
        student_logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student]
        student_views = list(student_logp[0].chunk(2)) + list(student_logp[1].chunk(4))
        total, terms = 0.0, 0
        for ti, t in enumerate(teacher_prob):
            for si, s in enumerate(student_views):
                if si == ti:
                    continue
                total = total + (-(t * s).sum(-1)).mean()
                terms += 1
        with torch.no_grad():
            self.center.mul_(0.9).add_(teacher_out.mean(0, keepdim=True), alpha=0.1)
            probs = torch.cat(teacher_prob)
            info = {
                "teacher_entropy": float(entropy(probs).mean()),
                "teacher_mean_entropy": float(entropy(probs.mean(0))),
                "uniform_entropy": math.log(probs.shape[-1]),
            }
        return total / terms, info

    @torch.no_grad()
    def update_teacher(self, progress):
        momentum = 1 - (1 - 0.996) * (math.cos(math.pi * progress) + 1) / 2
        for s, t in zip(
            list(self.encoder.parameters()) + list(self.head.parameters()),
            list(self.teacher.parameters()) + list(self.teacher_head.parameters()),
            strict=True,
        ):
            t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


RECIPES = {  # objective: (wrapper, batch, peak lr, betas, weight decay at start, at end (cosine))
    "supervised": (Supervised, 256, 5e-4, (0.9, 0.999), 0.05, 0.05),
    "mae": (MAE, 256, 1.5e-3, (0.9, 0.95), 0.05, 0.05),
    "dino": (DINO, 128, 5e-4, (0.9, 0.999), 0.04, 0.4),
}


def make_optimizer(model: nn.Module, objective: str) -> torch.optim.AdamW:
    """AdamW with the recipe's peak lr and betas; weight decay on matrices only (group 0)."""
    _, _, peak, betas, decay_start, _ = RECIPES[objective]
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": decay_start},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=peak, betas=betas)


# with --minutes: the throughput is measured over these steps, then the step count fixed
CALIBRATION = (20, 60)


def lr_at(step, total, peak, prelude=0, warmup_fraction=0.05):
    """Linear ramp to 10 % of ``peak`` over ``prelude`` steps (the calibration steps of a timed run, whose
    total is not yet known), linear warmup to ``peak`` over 5 % of ``total``, cosine to 0 at ``total``."""
    if step < prelude:
        return peak * 0.1 * (step + 1) / prelude
    start = 0.1 if prelude else 0.0
    warmup = max(1, int(total * warmup_fraction))
    if step < prelude + warmup:
        return peak * (start + (1 - start) * (step - prelude + 1) / warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * (step - prelude - warmup) / max(1, total - prelude - warmup)))


def progress_at(step, total, prelude=0):
    """Schedule position in [0, 1] (EMA momentum, weight decay); 0 during the prelude."""
    return 0.0 if step < prelude else step / total


def train(
    objective: str,
    seed: int,
    out: Path,
    minutes: float | None,
    steps: int | None,
    device: str,
    log_every: int = 50,
    batch: int | None = None,
    max_minutes: float | None = None,
    prelude: int | None = None,
    stop_after: int | None = None,
    deadline: float | None = None,
):
    """Train one tiny ViT and save its encoder; returns the checkpoint path.

    ``steps`` fixes the schedule length; otherwise ``minutes`` calibrates it (steps CALIBRATION measure the
    throughput; those steps are a fixed-length ``prelude`` of the schedule, so the recorded ``--steps N
    --prelude P`` command repeats the run). ``max_minutes`` is a hard wall-clock cap: the run stops there
    (before the end of its schedule if it must) and still saves; the command then carries ``--stop-after``.
    ``deadline`` (Unix time) is the same cap as an absolute clock time, for several runs launched together.
    """
    if objective not in RECIPES:
        raise SystemExit(f"unknown objective {objective!r}; choose from {sorted(RECIPES)}")
    if steps is None and minutes is None:
        raise SystemExit("give --steps or --minutes")
    wrapper, default_batch, peak, _, decay_start, decay_end = RECIPES[objective]
    batch = batch or default_batch
    prelude = prelude if prelude is not None else (0 if steps is not None else CALIBRATION[1])
    torch.manual_seed(seed)
    model = wrapper(TinyViT(tiny_config_dict())).to(device)
    optimizer = make_optimizer(model, objective)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    bank = texture_bank(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    chunk = 4  # scenes for `chunk` steps are rendered in one call (fewer kernel launches)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.startswith("cuda")
        else torch.autocast("cpu", enabled=False)
    )
    total = steps if steps is not None else 10**9
    started, history, step, pool = time.time(), [], 0, []
    calibration_start = None
    last_loss, stopped_by_clock = float("nan"), False
    stop_time = min(started + max_minutes * 60 if max_minutes is not None else math.inf, deadline or math.inf)
    while step < min(total, stop_after or total):
        if not pool:
            pool = training_batches(batch, chunk, TRAIN_SEED_BASE + seed * 10**7 + step, device, bank)
        scenes = pool.pop(0)
        progress = progress_at(step, total, prelude)
        optimizer.param_groups[0]["weight_decay"] = (
            decay_end + (decay_start - decay_end) * (1 + math.cos(math.pi * progress)) / 2
        )
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, peak, prelude)
        with autocast:
            loss, info = model.loss(scenes, generator, progress)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if objective == "dino" and progress < 0.01:
            model.head.last.parametrizations.weight.original1.grad = None
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        if objective == "dino":
            model.update_teacher(progress)
        step += 1
        if steps is None and step in CALIBRATION:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if step == CALIBRATION[0]:
                calibration_start = time.time()
            else:
                rate = (CALIBRATION[1] - CALIBRATION[0]) / (time.time() - calibration_start)
                remaining = min((minutes or math.inf) * 60 - (time.time() - started), stop_time - time.time())
                total = max(step + 10, step + int(rate * remaining * 0.95))
                print(f"[{objective} s{seed}] {rate:.1f} steps/s -> {total} steps", flush=True)
        out_of_time = time.time() > stop_time
        if step % log_every == 0 or step == total or out_of_time:
            last_loss = float(loss.detach())
            history.append(
                {
                    "step": step,
                    "loss": last_loss,
                    "seconds": round(time.time() - started, 1),
                    "lr": optimizer.param_groups[0]["lr"],
                    **info,
                }
            )
            print(json.dumps({"objective": objective, "seed": seed, **history[-1]}), flush=True)
        if out_of_time and step < total:
            stopped_by_clock = True
            total = step if total == 10**9 else total  # stopped before the calibration fixed a schedule
            print(f"[{objective} s{seed}] time cap reached at step {step} of {total}", flush=True)
            break
    seconds = time.time() - started
    command = (
        f"python3 tools/train_tiny_vit.py --objective {objective} --seed {seed} "
        f"--steps {total} --batch {batch} --prelude {prelude}"
        + (f" --stop-after {step}" if step < total else "")
        + f" --out {out}"
    )
    metadata = {
        "objective": objective,
        "seed": seed,
        "steps": step,
        "schedule_steps": total,
        "stopped_by_clock": stopped_by_clock,
        "batch": batch,
        "samples": step * batch,
        "seconds": round(seconds, 1),
        "final_loss": last_loss,
        "final": history[-1] if history else {},
        "history": history[-20:],
        "command": command,
        "generator_version": GENERATOR_VERSION,
        "scene_config": TRAIN_SCENES.to_dict(),
        "easy_scene_config": EASY_SCENES.to_dict(),
        "easy_fraction": EASY_FRACTION,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
    }
    path = save_checkpoint(model.encoder, Path(out) / f"tiny-vit-{objective}-s{seed}.safetensors", metadata)
    print(f"saved {path} after {step} steps in {seconds:.0f} s", flush=True)
    print(
        "FINAL "
        + json.dumps(
            {
                "objective": objective,
                "seed": seed,
                "steps": step,
                "schedule_steps": total,
                "seconds": round(seconds, 1),
                **(history[-1] if history else {}),
            }
        ),
        flush=True,
    )
    return path


def training_batches(batch: int, chunk: int, scene_seed: int, device, bank) -> list:
    """``chunk`` batches of ``batch`` scenes, each ``EASY_FRACTION`` EASY_SCENES and the rest TRAIN_SCENES."""
    easy = int(round(batch * EASY_FRACTION))
    parts = []
    if easy:
        parts.append(make_scenes(easy * chunk, seed=scene_seed, config=EASY_SCENES, device=device, bank=bank))
    if batch - easy:
        parts.append(
            make_scenes(
                (batch - easy) * chunk,
                seed=scene_seed + 5 * 10**6,
                config=TRAIN_SCENES,
                device=device,
                bank=bank,
            )
        )
    sizes = [easy, batch - easy] if easy else [batch]
    return [
        _concat([_slice(part, i * size, (i + 1) * size) for part, size in zip(parts, sizes, strict=True)])
        for i in range(chunk)
    ]


def _slice(scenes, start, stop):
    return replace(
        scenes,
        images=scenes.images[start:stop],
        instance=scenes.instance[start:stop],
        part=scenes.part[start:stop],
        classes=scenes.classes[start:stop],
        visible=scenes.visible[start:stop],
        texture=scenes.texture[start:stop],
        amodal=None,
    )


def _concat(batches: list):
    if len(batches) == 1:
        return batches[0]
    return replace(
        batches[0],
        **{
            name: torch.cat([getattr(b, name) for b in batches])
            for name in ("images", "instance", "part", "classes", "visible", "texture")
        },
        dropped_parts=sum(b.dropped_parts for b in batches),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True, choices=sorted(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--minutes", type=float, default=None, help="time budget; the step count is calibrated"
    )
    parser.add_argument("--steps", type=int, default=None, help="exact schedule length (overrides --minutes)")
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="hard wall-clock cap: stop there and save"
    )
    parser.add_argument("--deadline", type=float, default=None, help="the same cap as a Unix time (seconds)")
    parser.add_argument(
        "--prelude", type=int, default=None, help="calibration prelude steps (recorded by timed runs)"
    )
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop after this many steps of the schedule"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=None, help="scenes per step (default: the recipe's)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.steps is None and args.minutes is None:
        parser.error("give --steps or --minutes (with --max-minutes as a hard cap if wanted)")
    train(
        args.objective,
        args.seed,
        args.out,
        args.minutes,
        args.steps,
        args.device,
        args.log_every,
        args.batch,
        args.max_minutes,
        args.prelude,
        args.stop_after,
        args.deadline,
    )


if __name__ == "__main__":
    main()
