"""Procedural scenes with exact instance masks, batched in torch (CPU for probes, GPU for pretraining).

Labels are exact by construction; the design removes the shortcuts that let a random network "bind"
(vision.md §2.3): objects draw their textures from a small per-scene palette (two objects often look alike:
hard negatives), 40 % of objects have a second part with a *different* texture (hard positives), objects
occlude each other in random depth order (split fragments), each scene uses only 2-3 shape classes (many
same-class, different-instance pairs), and a part whose mean colour is too close to what lies around it is
redrawn brighter/darker or dropped (camouflage rejection). Textures are crops of scikit-image's bundled
photos plus procedural stripes, checks and noise. A scene set is reproducible from
``(GENERATOR_VERSION, config, seed, count)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

GENERATOR_VERSION = 1
CLASS_NAMES = ("ellipse", "rectangle", "triangle", "star", "astroid", "blob", "ring", "crescent")
NUM_CLASSES = len(CLASS_NAMES)
_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "cell",
    "text",
)


@dataclass(frozen=True)
class SceneConfig:
    size: int = 224
    min_objects: int = 2
    max_objects: int = 6
    classes_per_scene: tuple[int, int] = (2, 3)
    radius: tuple[float, float] = (0.08, 0.26)  # fraction of the canvas
    multipart_fraction: float = 0.4
    palette_size: int = 2
    share_background_texture: float = 0.3
    contrast_threshold: float = 0.08  # mean RGB distance (0..1) between a part and its surround
    rim_probability: float = 0.3
    blur_probability: float = 0.3
    noise: float = 0.03

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SceneBatch:
    """images (B, 3, H, W) float in [0, 1]; instance (B, H, W) 0 = background, 1..O objects;
    part (B, H, W) 0 = background, slot + 1; classes (B, O) shape class per object (-1 = absent);
    visible (B, O) pixel count; texture (B, H, W) palette entry + 1 of the visible part (0 = background);
    amodal (B, O, H, W) bool (unoccluded silhouettes) when asked for."""

    images: torch.Tensor
    instance: torch.Tensor
    part: torch.Tensor
    classes: torch.Tensor
    visible: torch.Tensor
    texture: torch.Tensor
    dropped_parts: int
    amodal: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def uint8(self) -> np.ndarray:
        """(B, H, W, 3) uint8 images."""
        return (self.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def largest_class(self) -> torch.Tensor:
        """The class of the largest visible object per scene (the supervised pretraining label)."""
        index = self.visible.argmax(dim=1, keepdim=True)
        return self.classes.gather(1, index)[:, 0].clamp_min(0)


@lru_cache(maxsize=4)
def _texture_bank_cpu(side: int) -> torch.Tensor:
    import skimage.data

    generator = np.random.default_rng(1234)
    textures = []
    for name in _PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        image = image[..., :3].astype(np.float32) / 255.0
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
        height, width = tensor.shape[-2:]
        for _ in range(2):  # two crops per photo
            crop = int(min(height, width) * generator.uniform(0.5, 0.9))
            top = int(generator.integers(0, height - crop + 1))
            left = int(generator.integers(0, width - crop + 1))
            piece = tensor[..., top : top + crop, left : left + crop]
            textures.append(F.interpolate(piece, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0])
    grid = torch.linspace(0, 1, side)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    torch_generator = torch.Generator().manual_seed(1234)
    for frequency in (4, 7, 11):
        for angle in (0.3, 1.2):
            wave = torch.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)))
            textures.append((0.5 + 0.4 * wave)[None].repeat(3, 1, 1))  # stripes
        checks = ((torch.floor(x * frequency) + torch.floor(y * frequency)) % 2) * 0.6 + 0.2
        textures.append(checks[None].repeat(3, 1, 1))
    for smooth in (3, 9, 21):
        noise = torch.rand(1, 3, side, side, generator=torch_generator)
        noise = F.avg_pool2d(noise, smooth, stride=1, padding=smooth // 2, count_include_pad=False)
        noise = (noise - noise.amin()) / (noise.amax() - noise.amin() + 1e-6)
        textures.append(noise[0])
    return torch.stack(textures).clamp(0, 1).contiguous()


def texture_bank(side: int = 128, device="cpu") -> torch.Tensor:
    """(K, 3, side, side) texture crops of scikit-image photos and procedural patterns, fixed seed."""
    return _texture_bank_cpu(side).to(device)


def _uniform(generator, shape, low, high, device):
    return torch.rand(shape, generator=generator, device=device) * (high - low) + low


def _palette_images(bank, count, size, generator, device):
    """(count, 3, size, size): random zoomed, rotated, tinted crops of bank textures."""
    k = bank.shape[0]
    index = torch.randint(0, k, (count,), generator=generator, device=device)
    return _render_textures(bank, index, size, generator, device), index


def _render_textures(bank, index, size, generator, device):
    count = index.shape[0]
    zoom = _uniform(generator, (count,), 0.3, 1.0, device)
    angle = _uniform(generator, (count,), 0, 2 * math.pi, device)
    shift = _uniform(generator, (count, 2), -1, 1, device) * (1 - zoom[:, None])
    theta = torch.zeros(count, 2, 3, device=device)
    theta[:, 0, 0] = zoom * torch.cos(angle)
    theta[:, 0, 1] = -zoom * torch.sin(angle)
    theta[:, 1, 0] = zoom * torch.sin(angle)
    theta[:, 1, 1] = zoom * torch.cos(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, (count, 3, size, size), align_corners=False)
    images = F.grid_sample(bank[index], grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    colour = torch.rand(count, 3, 1, 1, generator=generator, device=device)
    strength = _uniform(generator, (count, 1, 1, 1), 0.0, 0.8, device)
    luminance = images.mean(dim=1, keepdim=True)
    tinted = torch.lerp(images, (luminance * colour * 1.8).clamp(0, 1), strength)
    gain = _uniform(generator, (count, 1, 1, 1), 0.7, 1.3, device)
    offset = _uniform(generator, (count, 1, 1, 1), -0.15, 0.15, device)
    return (tinted * gain + offset).clamp(0, 1)


def _radius(family, rho_angle, u, v, params):
    """Inside test for every family at once; selects by ``family`` (B, S, 1, 1)."""
    phi = rho_angle
    rho = torch.sqrt(u * u + v * v)
    amp, phase = params  # (B, S, 3, 1, 1) each
    ellipse = rho <= 1.0
    u2, v2 = (u * u) ** 2, (v * v) ** 2
    superellipse = (u2 * u2 + v2 * v2) <= 0.85**8
    n = 3
    sector = torch.remainder(phi + math.pi / 2, 2 * math.pi / n) - math.pi / n
    triangle = rho * torch.cos(sector) <= 0.6
    star = rho <= 0.55 + 0.5 * torch.abs(torch.cos(2.5 * phi))
    astroid = (u.abs() ** 0.6 + v.abs() ** 0.6) <= 1.05
    wobble = 1.0
    for k in range(3):
        wobble = wobble + amp[:, :, k] * torch.cos((k + 2) * phi + phase[:, :, k])
    blob = rho <= 0.95 * wobble
    ring = (rho <= 1.0) & (rho >= 0.55)
    crescent = (rho <= 1.0) & (((u - 0.45) ** 2 + v * v) >= 0.8**2)
    shapes = (ellipse, superellipse, triangle, star, astroid, blob, ring, crescent)
    inside = torch.zeros_like(ellipse)
    for index, shape in enumerate(shapes):
        inside = torch.where(family == index, shape, inside)
    return inside


def _dilate(mask, radius):
    """Square dilation as two 1-D max pools (much cheaper than one 2-D pool on CPU)."""
    size = 2 * radius + 1
    grown = F.max_pool2d(mask[:, None].float(), (1, size), stride=1, padding=(0, radius))
    return F.max_pool2d(grown, (size, 1), stride=1, padding=(radius, 0))[:, 0] > 0


def _erode(mask, radius):
    return ~_dilate(~mask, radius)


@torch.no_grad()
def make_scenes(
    count: int,
    seed: int = 0,
    config: SceneConfig | None = None,
    device="cpu",
    bank: torch.Tensor | None = None,
    amodal: bool = False,
) -> SceneBatch:
    """``count`` scenes from ``seed`` (same seed, count, config and version give the same scenes)."""
    config = config or SceneConfig()
    device = torch.device(device)
    bank = texture_bank(device=device) if bank is None else bank
    generator = torch.Generator(device=device).manual_seed(int(seed))
    b, o, size = count, config.max_objects, config.size
    slots = 2 * o  # slot 2j = main part of object j, 2j + 1 = its optional second part

    # --- objects ------------------------------------------------------------------------------
    n_objects = torch.randint(config.min_objects, config.max_objects + 1, (b, 1), generator=generator, device=device)
    active = torch.arange(o, device=device)[None] < n_objects  # (B, O)
    n_classes = torch.randint(config.classes_per_scene[0], config.classes_per_scene[1] + 1, (b, 1), generator=generator, device=device)
    scene_classes = torch.argsort(torch.rand(b, NUM_CLASSES, generator=generator, device=device), dim=1)
    pick = (torch.rand(b, o, generator=generator, device=device) * n_classes).long()
    classes = scene_classes.gather(1, pick)  # (B, O)
    low, high = math.log(config.radius[0]), math.log(config.radius[1])
    radius = torch.exp(_uniform(generator, (b, o), low, high, device))
    center = _uniform(generator, (b, o, 2), 0.08, 0.92, device)
    multipart = active & (torch.rand(b, o, generator=generator, device=device) < config.multipart_fraction)
    attach = _uniform(generator, (b, o), 0, 2 * math.pi, device)
    reach = radius * _uniform(generator, (b, o), 0.75, 1.1, device)
    part_center = center + torch.stack([torch.cos(attach), torch.sin(attach)], -1) * reach[..., None]
    part_radius = radius * _uniform(generator, (b, o), 0.4, 0.7, device)
    part_family = torch.randint(0, NUM_CLASSES, (b, o), generator=generator, device=device)

    def interleave(main, second):
        return torch.stack([main, second], dim=2).flatten(1, 2)

    slot_center = interleave(center, part_center)  # (B, S, 2)
    slot_radius = interleave(radius, part_radius)
    slot_family = interleave(classes, part_family)
    slot_active = interleave(active, multipart)
    slot_object = torch.arange(slots, device=device) // 2 + 1  # instance id of each slot
    aspect = _uniform(generator, (b, slots), 0.6, 1.0, device)
    rotation = _uniform(generator, (b, slots), 0, 2 * math.pi, device)
    amplitude = _uniform(generator, (b, slots, 3, 1, 1), 0.0, 0.22, device)
    phase = _uniform(generator, (b, slots, 3, 1, 1), 0, 2 * math.pi, device)
    palette_index = torch.randint(0, config.palette_size, (b, o), generator=generator, device=device)
    other = (palette_index + 1 + torch.randint(0, max(1, config.palette_size - 1), (b, o), generator=generator, device=device)) % config.palette_size
    slot_texture = interleave(palette_index, other)
    shade = _uniform(generator, (b, slots), -0.35, 0.35, device)
    shade_angle = _uniform(generator, (b, slots), 0, 2 * math.pi, device)
    rim = torch.rand(b, slots, generator=generator, device=device) < config.rim_probability

    # --- textures: a per-scene palette plus a background ---------------------------------------
    palette, palette_bank = _palette_images(bank, b * config.palette_size, size, generator, device)
    palette = palette.view(b, config.palette_size, 3, size, size)
    background_index = torch.randint(0, bank.shape[0], (b,), generator=generator, device=device)
    share = torch.rand(b, generator=generator, device=device) < config.share_background_texture
    background_index = torch.where(share, palette_bank.view(b, -1)[:, 0], background_index)
    canvas = _render_textures(bank, background_index, size, generator, device)

    # --- geometry: inside masks of all slots (B, S, H, W) ----------------------------------------
    axis = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    dx = (xs - slot_center[..., 0, None, None]) / slot_radius[..., None, None]
    dy = (ys - slot_center[..., 1, None, None]) / slot_radius[..., None, None]
    cos, sin = torch.cos(rotation)[..., None, None], torch.sin(rotation)[..., None, None]
    u = cos * dx + sin * dy
    v = (-sin * dx + cos * dy) / aspect[..., None, None]
    inside = _radius(slot_family[..., None, None], torch.atan2(v, u), u, v, (amplitude, phase))
    inside &= slot_active[..., None, None]
    shading = 1 + shade[..., None, None] * (torch.cos(shade_angle)[..., None, None] * dx + torch.sin(shade_angle)[..., None, None] * dy) / 2

    # --- painter's algorithm with camouflage rejection ------------------------------------------
    instance = torch.zeros(b, size, size, dtype=torch.long, device=device)
    part = torch.zeros_like(instance)
    texture = torch.zeros_like(instance)
    factor = next(f for f in (4, 2, 1) if size % f == 0 and size // f >= 48)
    ring_radius = max(1, size // (40 * factor))
    rows = torch.arange(b, device=device)
    dropped = 0
    for slot in range(slots):
        mask = inside[:, slot]
        colour = (palette[rows, slot_texture[:, slot]] * shading[:, slot, None]).clamp(0, 1)
        area = mask.sum((1, 2)).clamp_min(1)
        small_mask = F.avg_pool2d(mask[:, None].float(), factor)[:, 0] > 0.5  # contrast at reduced resolution
        surround = (_dilate(small_mask, ring_radius) & ~small_mask)[:, None]
        surround_mean = (F.avg_pool2d(canvas, factor) * surround).sum((2, 3)) / surround.sum((1, 2, 3)).clamp_min(1)[:, None]
        object_mean = (colour * mask[:, None]).sum((2, 3)) / area[:, None]
        contrast = (object_mean - surround_mean).norm(dim=1) / math.sqrt(3)
        low = (contrast < config.contrast_threshold) & mask.flatten(1).any(1)
        if bool(low.any()):
            direction = torch.where(object_mean.mean(1) >= surround_mean.mean(1), 1.0, -1.0)
            redrawn = (colour + 0.35 * direction[:, None, None, None]).clamp(0, 1)
            redrawn_mean = (redrawn * mask[:, None]).sum((2, 3)) / area[:, None]
            fixed = (redrawn_mean - surround_mean).norm(dim=1) / math.sqrt(3) >= config.contrast_threshold
            colour = torch.where((low & fixed)[:, None, None, None], redrawn, colour)
            drop = low & ~fixed
            dropped += int(drop.sum())
            mask = mask & ~drop[:, None, None]
        canvas = torch.where(mask[:, None], colour, canvas)
        edge = mask & ~_erode(mask, 1) & rim[:, slot, None, None]
        canvas = torch.where(edge[:, None], canvas * 0.55, canvas)
        instance = torch.where(mask, slot_object[slot], instance)
        part = torch.where(mask, slot + 1, part)
        texture = torch.where(mask, slot_texture[:, slot, None, None] + 1, texture)

    # --- photometric knobs ----------------------------------------------------------------------
    gain = _uniform(generator, (b, 1, 1, 1), 0.85, 1.15, device)
    bias = _uniform(generator, (b, 1, 1, 1), -0.06, 0.06, device)
    canvas = canvas * gain + bias
    blur = torch.rand(b, generator=generator, device=device) < config.blur_probability
    kernel = torch.tensor([1.0, 2.0, 1.0], device=device)
    kernel = (kernel[:, None] * kernel[None]) / 16
    blurred = F.conv2d(F.pad(canvas, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
    canvas = torch.where(blur[:, None, None, None], blurred, canvas)
    sigma = _uniform(generator, (b, 1, 1, 1), 0, config.noise, device)
    canvas = (canvas + sigma * torch.randn(canvas.shape, generator=generator, device=device)).clamp(0, 1)

    visible = F.one_hot(instance, o + 1).sum((1, 2))[:, 1:]  # (B, O)
    classes = torch.where(active & (visible > 0), classes, torch.full_like(classes, -1))
    amodal_masks = None
    if amodal:
        amodal_masks = inside.view(b, o, 2, size, size).any(2)
    return SceneBatch(canvas, instance, part, classes, visible, texture, dropped, amodal_masks)


def patch_mode(labels: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, N) most frequent value of a non-negative integer map over each patch."""
    counts = F.avg_pool2d(F.one_hot(labels, int(labels.max()) + 1).permute(0, 3, 1, 2).float(), patch)
    return counts.flatten(2).argmax(dim=1)


def patch_labels(instance: torch.Tensor, patch: int, purity: float = 0.8):
    """Mode of the instance id over each patch: (labels (B, N) with -1 where purity < ``purity``, purity (B, N)).

    Patches are in row-major order, matching a ViT's patch tokens.
    """
    b, height, width = instance.shape
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch}")
    ids = int(instance.max()) + 1
    counts = F.avg_pool2d(F.one_hot(instance, ids).permute(0, 3, 1, 2).float(), patch)  # (B, ids, gh, gw)
    share, mode = counts.flatten(2).max(dim=1)
    labels = torch.where(share >= purity, mode, torch.full_like(mode, -1))
    return labels, share


def scene_config_for(size: int) -> SceneConfig:
    """Scenes for a model's input side: small canvases (<= 96 px, tiny ViTs) get fewer, larger objects."""
    if size <= 96:
        return SceneConfig(size=size, max_objects=5, radius=(0.12, 0.32))
    return SceneConfig(size=size)


def make_scene_set(count: int, seed: int, config: SceneConfig, chunk: int = 16, bank=None) -> SceneBatch:
    """``count`` scenes rendered in chunks of ``chunk`` (chunk k uses seed ``seed * 100003 + k``), on CPU."""
    from dataclasses import fields

    bank = texture_bank() if bank is None else bank
    parts = [
        make_scenes(min(chunk, count - start), seed * 100003 + k, config, bank=bank)
        for k, start in enumerate(range(0, count, chunk))
    ]
    merged = {}
    for field in fields(SceneBatch):
        values = [getattr(p, field.name) for p in parts]
        if field.name == "dropped_parts":
            merged[field.name] = sum(values)
        elif values[0] is None:
            merged[field.name] = None
        else:
            merged[field.name] = torch.cat(values)
    return SceneBatch(**merged)
