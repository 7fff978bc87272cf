"""The `vit` family: timm's `VisionTransformer` layout, elastic AutoFormer-style.

Patch embedding (conv), class token, learned position embedding, pre-norm blocks of multi-head attention + MLP
(LayerNorm eps 1e-6, exact GELU, as timm), final norm, the class token's features into a linear head. Elastic:
depth (the first L blocks), per-block heads (the first h heads: q/k/v rows and proj columns; head width fixed),
per-block MLP width (the first `round(embed * ratio)` hidden units), the embedding dim where the space offers
more than one (the first d features of LayerNorm, every projection, the class and position embeddings), and the
input resolution (position embeddings resampled bicubically, as timm's `resample_abs_pos_embed` does).

The blocks' static modules live in `nasforge.supernet.vit`; their parameter names follow timm's, so a timm state
dict maps onto the supernet by `timm_to_supernet` (a rename of three prefixes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nasforge.arch import ArchConfig
from nasforge.config import check, field_error
from nasforge.families.base import (
    FAMILIES,
    Family,
    ParsedSpace,
    PlacedLayer,
    SpaceFile,
    SpaceView,
    StageSpec,
    distinct_sorted,
)
from nasforge.genes import DEPTH, RESOLUTION, GeneGroup
from nasforge.layers import BLOCKS, BlockKind, LayerSpec

HEADS = GeneGroup("heads", "heads", "block", integer=True)
MLP = GeneGroup("mlp", "mlp_ratios", "block")
EMBED = GeneGroup("embed", "embed_dims", "global", integer=True)


@dataclass(frozen=True, kw_only=True)
class ViTFile(SpaceFile):
    """A `vit` space: every elastic dimension is a list of choices (one choice = fixed)."""

    patch: int = field(metadata=check(gt=0))
    head_dim: int = field(metadata=check(gt=0))
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, minimum in (("embed_dims", 1), ("depths", 1), ("heads", 1)):
            object.__setattr__(self, name, distinct_sorted(getattr(self, name), name, minimum=minimum))
        object.__setattr__(self, "mlp_ratios", distinct_sorted(self.mlp_ratios, "mlp_ratios", positive=True))
        bad = [r for r in self.resolution_list if r % self.patch]
        if bad:
            raise field_error("resolutions", f"multiples of patch ({self.patch})", bad)

    def embed_dim(self, arch: ArchConfig) -> int:
        """The arch's embedding dim (the space's only one when it is fixed)."""
        values = arch.get(EMBED.field)
        return int(values[0]) if values else max(self.embed_dims)


EXAMPLE_SPACE: dict[str, Any] = {
    "name": "vit-example", "family": "vit", "resolutions": [8, 12], "num_classes": 10, "patch": 4,
    "head_dim": 4, "embed_dims": [8, 12], "depths": [1, 2], "heads": [2, 3], "mlp_ratios": [1.0, 2.0],
    "description": "a tiny elastic ViT the conformance suites run on (every elastic dimension, two choices each)",
}


# ---------------------------------------------------------------------------------------------- block kinds
def _tokens(spec: LayerSpec) -> int:
    return int(spec.attr("tokens", 0))  # type: ignore[arg-type]


def _inner(spec: LayerSpec) -> int:
    return int(spec.attr("heads", 1)) * int(spec.attr("head_dim", 1))  # type: ignore[arg-type]


@BLOCKS.register("vit_embed", summary="image -> patch tokens + class token + position embedding (timm ViT)")
class ViTEmbedKind(BlockKind):
    module = "nasforge.supernet.vit:ViTEmbed"

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (_tokens(spec), spec.out_channels)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        return (_tokens(spec) - 1) * spec.out_channels * spec.in_channels * spec.kernel_size**2

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        conv = spec.out_channels * spec.in_channels * spec.kernel_size**2 + spec.out_channels
        return conv + spec.out_channels + _tokens(spec) * spec.out_channels

    @classmethod
    def activation_values(cls, spec: LayerSpec) -> int:
        return math.prod(cls.input_shape(spec)) + math.prod(cls.output_shape(spec))


@BLOCKS.register("vit_block", summary="timm ViT block: pre-norm multi-head attention + GELU MLP, residuals")
class ViTBlockKind(BlockKind):
    module = "nasforge.supernet.vit:ViTBlock"

    @classmethod
    def input_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (_tokens(spec), spec.in_channels)

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (_tokens(spec), spec.out_channels)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        n, dim, inner, hidden = _tokens(spec), spec.in_channels, _inner(spec), spec.mid_channels
        return n * dim * 3 * inner + 2 * n * n * inner + n * inner * dim + 2 * n * dim * hidden

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        dim, inner, hidden = spec.in_channels, _inner(spec), spec.mid_channels
        return 4 * dim + (dim * 3 * inner + 3 * inner) + (inner * dim + dim) + (dim * hidden + hidden) + (
            hidden * dim + dim)

    @classmethod
    def activation_values(cls, spec: LayerSpec) -> int:
        n, inner = _tokens(spec), _inner(spec)
        heads = int(spec.attr("heads", 1))  # type: ignore[arg-type]
        return 2 * n * spec.in_channels + n * (3 * inner + heads * n + inner + spec.mid_channels)


@BLOCKS.register("vit_head", summary="timm ViT head: final LayerNorm, the class token, linear classifier")
class ViTHeadKind(BlockKind):
    module = "nasforge.supernet.vit:ViTHead"

    @classmethod
    def input_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (_tokens(spec), spec.in_channels)

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (spec.num_classes,)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        return spec.in_channels * spec.num_classes

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        return 2 * spec.in_channels + spec.in_channels * spec.num_classes + spec.num_classes

    @classmethod
    def activation_values(cls, spec: LayerSpec) -> int:
        return _tokens(spec) * spec.in_channels + spec.num_classes


# ---------------------------------------------------------------------------------------------- the family
@FAMILIES.register("vit", summary="timm VisionTransformer: elastic depth, heads, MLP width, embed dim, resolution")
class ViTFamily(Family):
    name = "vit"
    schema = ViTFile
    gene_groups = (RESOLUTION, DEPTH, HEADS, MLP, EMBED)
    example_space = EXAMPLE_SPACE

    def parse(self, cfg: ViTFile) -> ParsedSpace:
        stage = StageSpec("blocks", cfg.depths, (("heads", cfg.heads), ("mlp", cfg.mlp_ratios)))
        embed = (("embed", tuple(float(d) for d in cfg.embed_dims)),) if len(cfg.embed_dims) > 1 else ()
        return ParsedSpace(cfg, (stage,), embed)

    def plan(self, space: SpaceView, arch: ArchConfig, num_classes: int) -> list[PlacedLayer]:
        cfg: ViTFile = space.config
        dim = cfg.embed_dim(arch)
        tokens = (arch.resolution // cfg.patch) ** 2 + 1
        out = [PlacedLayer(LayerSpec("vit_embed", 3, dim, arch.resolution, cfg.patch, cfg.patch,
                                     attrs=(("tokens", tokens),)))]
        for p, block in enumerate(space.block_choices(arch)[0]):
            attrs = (("tokens", tokens), ("heads", int(block["heads"])), ("head_dim", cfg.head_dim))
            out.append(PlacedLayer(LayerSpec("vit_block", dim, dim, mid_channels=round(dim * block["mlp"]),
                                             act="gelu", attrs=attrs), 0, p))
        out.append(PlacedLayer(LayerSpec("vit_head", dim, num_classes, num_classes=num_classes,
                                         attrs=(("tokens", tokens),))))
        return out

    def supernet(self, space: SpaceView) -> Any:
        from nasforge.supernet.vit import ElasticViT

        return ElasticViT(space)


__all__ = ["EMBED", "HEADS", "MLP", "ViTFamily", "ViTFile"]
