"""Per-image transforms of the streaming source: the papers' training augmentation and the eval crop.

Training (OFA, BigNAS, AttentiveNAS, AlphaNet): RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) to
the requested resolution, horizontal flip, optionally colour jitter and RandAugment or AutoAugment
(ImageNet policy). Evaluation: resize the shorter side to round(r / crop), centre crop r.

torchvision's transform classes draw from the global torch RNG; here every random choice is drawn
from a `torch.Generator` the caller seeds from (seed, epoch, sample position), and the pixel work
is done by torchvision's functional ops, so a sample looks the same in any worker process.
Images are uint8 (3, H, W) tensors in and out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from nasforge.config import Validated, check, field_error
from nasforge.registry import Registry

Policy = Callable[[torch.Tensor, torch.Generator, "AugmentConfig"], torch.Tensor]

# Colour/geometry policies applied after crop and flip; "none" is the plain crop-and-flip of OFA/BigNAS.
AUTO_AUGMENTS: Registry[Policy] = Registry("auto-augment policy", plural="auto_augments")


@dataclass(frozen=True)
class AugmentConfig(Validated):
    """Training augmentation of the streaming source and its evaluation crop."""

    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect ratio
    # brightness/contrast/saturation in [1 - j, 1 + j]; 0 = off (OFA used ~0.12)
    color_jitter: float = field(default=0.0, metadata=check(ge=0, lt=1))
    auto_augment: str = field(default="none", metadata=check(choices=AUTO_AUGMENTS))  # none | randaugment | ...
    randaugment_ops: int = field(default=2, metadata=check(ge=0))
    # of 31 bins (torchvision's RandAugment; AttentiveNAS: rand-m9)
    randaugment_magnitude: int = field(default=9, metadata=check(ge=0, le=30))
    # evaluation: shorter side to round(r / eval_crop), then centre crop r
    eval_crop: float = field(default=0.875, metadata=check(gt=0, le=1))

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise field_error("scale", "0 < min <= max <= 1", self.scale)
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise field_error("ratio", "0 < min <= max", self.ratio)

    def validate(self) -> AugmentConfig:
        return self


# ---------------------------------------------------------------------------- the two views
def train_view(image: torch.Tensor, resolution: int, gen: torch.Generator, cfg: AugmentConfig,
               flip: bool = True) -> torch.Tensor:
    """Random resized crop to `resolution`, flip, then the configured colour jitter / auto-augment policy."""
    from torchvision.transforms.v2 import functional as TF

    top, left, h, w = random_resized_crop_box(int(image.shape[-2]), int(image.shape[-1]), cfg.scale, cfg.ratio, gen)
    out = TF.resized_crop(image, top, left, h, w, [resolution, resolution],
                          interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    if flip and _uniform(gen) < 0.5:
        out = out.flip(-1)
    if cfg.color_jitter > 0:
        out = color_jitter(out, cfg.color_jitter, gen)
    return AUTO_AUGMENTS.get(cfg.auto_augment)(out, gen, cfg)


def eval_view(image: torch.Tensor, resolution: int, crop: float = 0.875) -> torch.Tensor:
    """Shorter side to round(resolution / crop), centre crop `resolution` (identity when already that size)."""
    from torchvision.transforms.v2 import functional as TF

    h, w = int(image.shape[-2]), int(image.shape[-1])
    side = max(resolution, round(resolution / crop))
    if min(h, w) != side:
        image = TF.resize(image, [side], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    if image.shape[-2] != resolution or image.shape[-1] != resolution:
        image = TF.center_crop(image, [resolution, resolution])
    return image.contiguous()


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                            gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w): torchvision's RandomResizedCrop.get_params, drawing from `gen`."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(gen, scale[0], scale[1])
        aspect = math.exp(_uniform(gen, log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, width - w + 1, (1,), generator=gen))
            return top, left, h, w
    in_ratio = width / height  # fallback: the central crop with the ratio clamped
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def color_jitter(image: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation factors in [1 - s, 1 + s], applied in a random order."""
    from torchvision.transforms.v2 import functional as TF

    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in torch.randperm(len(ops), generator=gen).tolist():
        image = ops[i](image, _uniform(gen, max(0.0, 1 - strength), 1 + strength))
    return image


# ---------------------------------------------------------------------------- auto-augment policies
@AUTO_AUGMENTS.register("none", summary="crop and flip only (OFA, BigNAS)")
def no_policy(image: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    return image


@AUTO_AUGMENTS.register("randaugment", summary="RandAugment, N ops at magnitude M of 31 (AttentiveNAS, AlphaNet)")
def rand_augment(image: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """torchvision's RandAugment (Cubuk et al. 2020): `randaugment_ops` uniformly chosen ops, random signs."""
    space = _op_space(31, int(image.shape[-2]), int(image.shape[-1]), with_invert=False)
    names = list(space)
    for _ in range(cfg.randaugment_ops):
        name = names[int(torch.randint(len(names), (1,), generator=gen))]
        magnitudes, signed = space[name]
        magnitude = float(magnitudes[cfg.randaugment_magnitude]) if magnitudes.ndim > 0 else 0.0
        if signed and int(torch.randint(2, (1,), generator=gen)):
            magnitude = -magnitude
        image = _apply_op(image, name, magnitude)
    return image


@AUTO_AUGMENTS.register("autoaugment", summary="AutoAugment's ImageNet policy (Cubuk et al. 2019)")
def auto_augment(image: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """torchvision's AutoAugment(IMAGENET): one of 25 sub-policies, each op applied with its probability."""
    policy = _IMAGENET_POLICY[int(torch.randint(len(_IMAGENET_POLICY), (1,), generator=gen))]
    probs = torch.rand((2,), generator=gen)
    signs = torch.randint(2, (2,), generator=gen)
    space = _op_space(10, int(image.shape[-2]), int(image.shape[-1]), with_invert=True)
    for i, (name, p, level) in enumerate(policy):
        if float(probs[i]) <= p:
            magnitudes, signed = space[name]
            magnitude = float(magnitudes[level]) if level is not None else 0.0
            if signed and int(signs[i]) == 0:
                magnitude = -magnitude
            image = _apply_op(image, name, magnitude)
    return image


@lru_cache(maxsize=64)
def _op_space(bins: int, height: int, width: int, *, with_invert: bool) -> dict[str, tuple[torch.Tensor, bool]]:
    """op -> (magnitude per bin, signed): torchvision's `_augmentation_space` of RandAugment/AutoAugment.

    Cached per image size; callers only read the tensors.
    """
    space = {
        "Identity": (torch.tensor(0.0), False),
        "ShearX": (torch.linspace(0.0, 0.3, bins), True),
        "ShearY": (torch.linspace(0.0, 0.3, bins), True),
        "TranslateX": (torch.linspace(0.0, 150.0 / 331.0 * width, bins), True),
        "TranslateY": (torch.linspace(0.0, 150.0 / 331.0 * height, bins), True),
        "Rotate": (torch.linspace(0.0, 30.0, bins), True),
        "Brightness": (torch.linspace(0.0, 0.9, bins), True),
        "Color": (torch.linspace(0.0, 0.9, bins), True),
        "Contrast": (torch.linspace(0.0, 0.9, bins), True),
        "Sharpness": (torch.linspace(0.0, 0.9, bins), True),
        "Posterize": (8 - (torch.arange(bins) / ((bins - 1) / 4)).round().int(), False),
        "Solarize": (torch.linspace(255.0, 0.0, bins), False),
        "AutoContrast": (torch.tensor(0.0), False),
        "Equalize": (torch.tensor(0.0), False),
    }
    if with_invert:
        del space["Identity"]
        space["Invert"] = (torch.tensor(0.0), False)
    return space


def _apply_op(image: torch.Tensor, name: str, m: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    nearest = TF.InterpolationMode.NEAREST
    ops: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "Identity": lambda x: x,
        "ShearX": lambda x: TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0,
                                      shear=[math.degrees(math.atan(m)), 0.0], interpolation=nearest, center=[0, 0]),
        "ShearY": lambda x: TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0,
                                      shear=[0.0, math.degrees(math.atan(m))], interpolation=nearest, center=[0, 0]),
        "TranslateX": lambda x: TF.affine(x, angle=0.0, translate=[int(m), 0], scale=1.0, shear=[0.0, 0.0],
                                          interpolation=nearest),
        "TranslateY": lambda x: TF.affine(x, angle=0.0, translate=[0, int(m)], scale=1.0, shear=[0.0, 0.0],
                                          interpolation=nearest),
        "Rotate": lambda x: TF.rotate(x, m, interpolation=nearest),
        "Brightness": lambda x: TF.adjust_brightness(x, 1.0 + m),
        "Color": lambda x: TF.adjust_saturation(x, 1.0 + m),
        "Contrast": lambda x: TF.adjust_contrast(x, 1.0 + m),
        "Sharpness": lambda x: TF.adjust_sharpness(x, 1.0 + m),
        "Posterize": lambda x: TF.posterize(x, int(m)),
        "Solarize": lambda x: TF.solarize(x, m),
        "AutoContrast": TF.autocontrast,
        "Equalize": TF.equalize,
        "Invert": TF.invert,
    }
    return ops[name](image)


def _uniform(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return float(torch.empty(1).uniform_(lo, hi, generator=gen))


# AutoAugment's ImageNet sub-policies (op, probability, magnitude bin), as torchvision lists them.
_IMAGENET_POLICY: tuple[tuple[tuple[str, float, int | None], ...], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)

__all__ = ["AUTO_AUGMENTS", "AugmentConfig", "auto_augment", "color_jitter", "eval_view", "rand_augment",
           "random_resized_crop_box", "train_view"]
