"""Train a tiny ViT on procedural scenes: supervised, MAE-style or DINO-style (vision.md §3.4, scaled down).

    PYTHONPATH=. python3 -m workbench.vision.train_tiny --objective dino --seed 0 --minutes 4 --out DIR

Scenes are rendered on the fly on the training device (training seeds >= 10**9 never meet the probe scenes,
whose seeds are small). With ``--minutes`` the step count is fixed after a short throughput calibration and
written into the checkpoint with the exact command (``--steps N``) that repeats the run; the learning-rate
and EMA schedules follow steps, not the clock. Only the encoder is saved (fp16, ``tiny_vit.save_checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workbench.vision.scenes import (
    GENERATOR_VERSION,
    NUM_CLASSES,
    make_scenes,
    scene_config_for,
    texture_bank,
)
from workbench.vision.tiny_vit import TinyViT, _Block, save_checkpoint, tiny_config_dict

TRAIN_SCENES = scene_config_for(64)
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


class Supervised(nn.Module):
    """Classify the shape class of the largest visible object from the cls token (8 classes)."""

    def __init__(self, encoder: TinyViT):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, NUM_CLASSES)

    def loss(self, scenes, generator, progress):
        images = colour_jitter(random_crops(scenes.images, 64, (0.6, 1.0), generator), generator, 0.2)
        logits = self.head(self.encoder(normalize(images))[:, 0])
        labels = scenes.largest_class()
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        return loss, {"accuracy": float((logits.argmax(1) == labels).float().mean())}


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
    def __init__(self, dim: int, out_dim: int = 2048, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad = False

    def forward(self, x):
        return self.last(F.normalize(self.mlp(x), dim=-1))


class DINO(nn.Module):
    """Self-distillation: EMA teacher on 2 global 64 px crops, student on those + 4 local 32 px crops."""

    def __init__(self, encoder: TinyViT, out_dim: int = 2048):
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
        globals_ = [colour_jitter(random_crops(images, 64, (0.4, 1.0), generator), generator) for _ in range(2)]
        locals_ = [colour_jitter(random_crops(images, 32, (0.1, 0.4), generator), generator) for _ in range(4)]
        teacher_temp = 0.04 + (0.07 - 0.04) * min(1.0, progress / 0.3)
        with torch.no_grad():
            teacher_out = self.teacher_head(self.teacher(normalize(torch.cat(globals_)))[:, 0])
            teacher_prob = F.softmax((teacher_out - self.center) / teacher_temp, dim=-1).chunk(2)
        student = [self.head(self.encoder(normalize(torch.cat(globals_)))[:, 0])]
        student.append(self.head(self.encoder(normalize(torch.cat(locals_)))[:, 0]))
        student_logp = [F.log_softmax(s / 0.1, dim=-1) for s in student]
        student_views = list(student_logp[0].chunk(2)) + list(student_logp[1].chunk(4))
        total, terms = 0.0, 0
        for ti, t in enumerate(teacher_prob):
            for si, s in enumerate(student_views):
                if si == ti:
                    continue
                total = total + (-(t * s).sum(-1)).mean()
                terms += 1
        with torch.no_grad():
            self.center.mul_(0.9).add_(teacher_out.float().mean(0, keepdim=True), alpha=0.1)
            probs = torch.cat(teacher_prob).float()
            entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())
        return total / terms, {"teacher_entropy": entropy, "teacher_temp": teacher_temp}

    @torch.no_grad()
    def update_teacher(self, progress):
        momentum = 1 - (1 - 0.996) * (math.cos(math.pi * progress) + 1) / 2
        for s, t in zip(list(self.encoder.parameters()) + list(self.head.parameters()),
                        list(self.teacher.parameters()) + list(self.teacher_head.parameters()), strict=True):
            t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


RECIPES = {  # objective: (wrapper, batch, peak lr, betas, weight decay)
    "supervised": (Supervised, 256, 1e-3, (0.9, 0.999), 0.05),
    "mae": (MAE, 256, 1.5e-3, (0.9, 0.95), 0.05),
    "dino": (DINO, 128, 5e-4, (0.9, 0.999), 0.04),
}


def lr_at(step, total, peak, warmup_fraction=0.05):
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(objective: str, seed: int, out: Path, minutes: float | None, steps: int | None, device: str,
          log_every: int = 50, batch: int | None = None):
    if objective not in RECIPES:
        raise SystemExit(f"unknown objective {objective!r}; choose from {sorted(RECIPES)}")
    wrapper, default_batch, peak, betas, weight_decay = RECIPES[objective]
    batch = batch or default_batch
    torch.manual_seed(seed)
    config = tiny_config_dict()
    model = wrapper(TinyViT(config)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=peak, betas=betas)
    bank = texture_bank(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    chunk = 4  # scenes for `chunk` steps are rendered in one call (fewer kernel launches)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    total = steps or 10**9
    started, calibrated, history, step, pool = time.time(), steps is not None, [], 0, []
    last_loss = float("nan")
    while step < total:
        if not pool:
            scene_seed = TRAIN_SEED_BASE + seed * 10**7 + step
            scenes = make_scenes(batch * chunk, seed=scene_seed, config=TRAIN_SCENES, device=device, bank=bank)
            pool = [_slice(scenes, i * batch, (i + 1) * batch) for i in range(chunk)]
        scenes = pool.pop(0)
        progress = step / total if calibrated else 0.0
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, peak) if calibrated else peak * 0.01
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
        if not calibrated and step == 30:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rate = step / (time.time() - started)
            total = max(step + 10, int(rate * minutes * 60 * 0.97))
            calibrated = True
            print(f"[{objective} s{seed}] {rate:.1f} steps/s -> {total} steps", flush=True)
        if step % log_every == 0 or step == total:
            last_loss = float(loss)
            history.append({"step": step, "loss": last_loss, "seconds": round(time.time() - started, 1), **info})
            print(json.dumps({"objective": objective, "seed": seed, **history[-1]}), flush=True)
    seconds = time.time() - started
    command = (f"PYTHONPATH=. python3 -m workbench.vision.train_tiny --objective {objective} --seed {seed} "
               f"--steps {total} --batch {batch} --out {out}")
    metadata = {
        "objective": objective,
        "seed": seed,
        "steps": total,
        "batch": batch,
        "samples": total * batch,
        "seconds": round(seconds, 1),
        "final_loss": last_loss,
        "history": history[-20:],
        "command": command,
        "generator_version": GENERATOR_VERSION,
        "scene_config": TRAIN_SCENES.to_dict(),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
    }
    path = save_checkpoint(model.encoder, Path(out) / f"tiny-vit-{objective}-s{seed}.safetensors", metadata)
    print(f"saved {path} after {total} steps in {seconds:.0f} s", flush=True)
    return path


def _slice(scenes, start, stop):
    from dataclasses import replace

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True, choices=sorted(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None, help="time budget; the step count is calibrated")
    parser.add_argument("--steps", type=int, default=None, help="exact number of steps (overrides --minutes)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=None, help="scenes per step (default: the recipe's)")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.steps is None and args.minutes is None:
        parser.error("give --steps or --minutes")
    train(args.objective, args.seed, args.out, args.minutes, args.steps, args.device, args.log_every, args.batch)


if __name__ == "__main__":
    main()
