"""A whole block family in one file: the proof that adding a family needs no edit to nasforge's core.

`tokenmix` is a tiny Vision-Transformer-like network: a patch embedding turns an image into a sequence of
tokens, pre-norm attention blocks work on `(batch, tokens, dim)`, a head pools the tokens and classifies.
Its elastic dimensions are two gene groups the core does not know, declared here: `heads` (attention heads per
block) and `mlp` (MLP hidden width per block, as a ratio of `dim`), plus the standard depth and resolution
(a larger image gives more tokens). Everything a family provides is here: the YAML schema and stages, the
gene groups, the static layers of an arch (`plan`), three block kinds with their shapes, costs (the
attention block's and head's are the `vit` family's: the same layers), static modules and table keys, the
elastic supernet (first `h` heads, first `m` hidden units, first `d` blocks, AutoFormer-style) with importance
re-ordering, and a small example space the conformance suites run on.

Importing this module registers the family and its block kinds (the test suite does, in `tests/conftest.py`);
`tests/test_token_family.py` takes it through training, the latency table, search and ONNX export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.config import check
from nasforge.families.base import FAMILIES, Family, ParsedSpace, PlacedLayer, SpaceFile, SpaceView, StageSpec
from nasforge.families.vit import ViTBlockKind, ViTHeadKind
from nasforge.genes import DEPTH, RESOLUTION, GeneGroup
from nasforge.layers import BLOCKS, BlockKind, LayerSpec, build_layer
from nasforge.supernet.base import ElasticSupernet
from nasforge.supernet.ops import Permutation, importance_order, permute_
from nasforge.supernet.static import StaticSubnet

HEADS = GeneGroup("heads", "heads", "block", integer=True)
MLP = GeneGroup("mlp", "mlp_ratios", "block")


# ---------------------------------------------------------------------------------------------- the space YAML
@dataclass(frozen=True, kw_only=True)
class TokenMixFile(SpaceFile):
    patch: int = field(metadata=check(gt=0))
    dim: int = field(metadata=check(gt=0))
    head_dim: int = field(metadata=check(gt=0))
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]


EXAMPLE_SPACE: dict[str, Any] = {
    "name": "tokenmix-tiny", "family": "tokenmix", "resolutions": [16, 24], "num_classes": 10,
    "patch": 8, "dim": 16, "head_dim": 4, "depths": [1, 2, 3], "heads": [2, 3, 4], "mlp_ratios": [1.0, 2.0],
    "description": "the one-file test family: image -> tokens -> elastic attention blocks -> head",
}


# ---------------------------------------------------------------------------------------------- block kinds
def _tokens(spec: LayerSpec) -> int:
    return int(spec.attr("tokens", 0))  # type: ignore[arg-type]


@BLOCKS.register("patch_embed", summary="image -> tokens: patch conv, flatten, learned position embedding")
class PatchEmbedKind(BlockKind):
    module = "nasforge.testing.token_family:PatchEmbed"

    @classmethod
    def output_shape(cls, spec: LayerSpec) -> tuple[int, ...]:
        return (_tokens(spec), spec.out_channels)

    @classmethod
    def macs(cls, spec: LayerSpec) -> int:
        return _tokens(spec) * spec.out_channels * spec.in_channels * spec.kernel_size**2

    @classmethod
    def params(cls, spec: LayerSpec) -> int:
        weights = spec.out_channels * spec.in_channels * spec.kernel_size**2 + spec.out_channels
        return weights + _tokens(spec) * spec.out_channels

    @classmethod
    def activation_values(cls, spec: LayerSpec) -> int:
        return math.prod(cls.input_shape(spec)) + math.prod(cls.output_shape(spec))


# Its attention block and head cost what timm's ViT block and head cost (the same layers; the head's mean over
# tokens is not counted, as the class token's pick is not): the formulas are the vit family's, one definition.
@BLOCKS.register("attention", summary="pre-norm multi-head self-attention + MLP on (tokens, dim), residual")
class AttentionKind(ViTBlockKind):
    module = "nasforge.testing.token_family:AttentionBlock"


@BLOCKS.register("token_head", summary="mean over tokens, LayerNorm, linear classifier")
class TokenHeadKind(ViTHeadKind):
    module = "nasforge.testing.token_family:TokenHead"


def _inner(spec: LayerSpec) -> int:
    return int(spec.attr("heads", 1)) * int(spec.attr("head_dim", 1))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the family
@FAMILIES.register("tokenmix", summary="test family: elastic heads and MLP width on (batch, tokens, dim)")
class TokenMixFamily(Family):
    name = "tokenmix"
    schema = TokenMixFile
    gene_groups = (RESOLUTION, DEPTH, HEADS, MLP)
    example_space = EXAMPLE_SPACE

    def parse(self, cfg: TokenMixFile) -> ParsedSpace:
        stage = StageSpec("blocks", tuple(sorted(cfg.depths)),
                          (("heads", tuple(sorted(cfg.heads))), ("mlp", tuple(sorted(cfg.mlp_ratios)))))
        return ParsedSpace(cfg, (stage,))

    def plan(self, space: SpaceView, arch: ArchConfig, num_classes: int) -> list[PlacedLayer]:
        cfg: TokenMixFile = space.config
        tokens = (arch.resolution // cfg.patch) ** 2
        out = [PlacedLayer(LayerSpec("patch_embed", 3, cfg.dim, arch.resolution, cfg.patch, cfg.patch,
                                     attrs=(("tokens", tokens),)))]
        for p, block in enumerate(space.block_choices(arch)[0]):
            hidden = round(cfg.dim * block["mlp"])
            attrs = (("tokens", tokens), ("heads", int(block["heads"])), ("head_dim", cfg.head_dim))
            out.append(PlacedLayer(LayerSpec("attention", cfg.dim, cfg.dim, mid_channels=hidden, act="gelu",
                                             attrs=attrs), 0, p))
        out.append(PlacedLayer(LayerSpec("token_head", cfg.dim, num_classes, num_classes=num_classes,
                                         attrs=(("tokens", tokens),))))
        return out

    def supernet(self, space: SpaceView) -> Any:
        return ElasticTokenMix(space)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- static modules
class PatchEmbed(nn.Module):
    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.proj = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride)
        self.pos = nn.Parameter(torch.zeros(_tokens(spec), spec.out_channels))

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> PatchEmbed:
        return cls(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return tokens + self.pos[: tokens.shape[1]]


def attention(x: torch.Tensor, ln1: nn.LayerNorm, qkv_w: torch.Tensor, qkv_b: torch.Tensor, proj_w: torch.Tensor,
              proj_b: torch.Tensor, ln2: nn.LayerNorm, fc1_w: torch.Tensor, fc1_b: torch.Tensor, fc2_w: torch.Tensor,
              fc2_b: torch.Tensor, heads: int) -> torch.Tensor:
    """One pre-norm block on given (sliced) weights: the elastic and the static module both run this."""
    b, n, _ = x.shape
    q, k, v = F.linear(ln1(x), qkv_w, qkv_b).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
    x = x + F.linear(y, proj_w, proj_b)
    return x + F.linear(F.gelu(F.linear(ln2(x), fc1_w, fc1_b)), fc2_w, fc2_b)


class AttentionBlock(nn.Module):
    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        dim, inner, hidden = spec.in_channels, _inner(spec), spec.mid_channels
        self.heads = int(spec.attr("heads", 1))  # type: ignore[arg-type]
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * inner), nn.Linear(inner, dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> AttentionBlock:
        return cls(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attention(x, self.ln1, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.ln2,
                         self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, self.heads)


class TokenHead(nn.Module):
    def __init__(self, spec: LayerSpec, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(spec.in_channels)
        self.classifier = nn.Linear(spec.in_channels, spec.num_classes)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> TokenHead:
        return cls(spec, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(x.mean(1)))


# ---------------------------------------------------------------------------------------------- the supernet
class ElasticAttention(nn.Module):
    """The largest block's weights; the first `heads` heads and first `hidden` MLP units are a subnet's."""

    def __init__(self, dim: int, max_heads: int, head_dim: int, max_hidden: int) -> None:
        super().__init__()
        self.max_heads, self.head_dim = max_heads, head_dim
        self.block = AttentionBlock(LayerSpec("attention", dim, dim, mid_channels=max_hidden,
                                              attrs=(("heads", max_heads), ("head_dim", head_dim))))

    def _qkv_rows(self, heads: int) -> torch.Tensor:
        inner, used = self.max_heads * self.head_dim, heads * self.head_dim
        return torch.cat([torch.arange(i * inner, i * inner + used) for i in range(3)]).to(self.block.qkv.weight.device)

    def weights(self, heads: int, hidden: int) -> tuple[torch.Tensor, ...]:
        b, rows, used = self.block, self._qkv_rows(heads), heads * self.head_dim
        return (b.qkv.weight[rows], b.qkv.bias[rows], b.proj.weight[:, :used], b.proj.bias,
                b.fc1.weight[:hidden], b.fc1.bias[:hidden], b.fc2.weight[:, :hidden], b.fc2.bias)

    def forward(self, x: torch.Tensor, heads: int, hidden: int) -> torch.Tensor:
        qkv_w, qkv_b, proj_w, proj_b, fc1_w, fc1_b, fc2_w, fc2_b = self.weights(heads, hidden)
        return attention(x, self.block.ln1, qkv_w, qkv_b, proj_w, proj_b, self.block.ln2, fc1_w, fc1_b, fc2_w,
                         fc2_b, heads)

    @torch.no_grad()
    def copy_into(self, static: AttentionBlock, heads: int, hidden: int) -> None:
        qkv_w, qkv_b, proj_w, proj_b, fc1_w, fc1_b, fc2_w, fc2_b = self.weights(heads, hidden)
        for module, weight, bias in ((static.qkv, qkv_w, qkv_b), (static.proj, proj_w, proj_b),
                                     (static.fc1, fc1_w, fc1_b), (static.fc2, fc2_w, fc2_b)):
            module.weight.copy_(weight)
            module.bias.copy_(bias)
        static.ln1.load_state_dict(self.block.ln1.state_dict())
        static.ln2.load_state_dict(self.block.ln2.state_dict())

    @torch.no_grad()
    def reorder(self, log: list[Permutation]) -> None:
        """Most important MLP units and heads first (DynaBERT): L1 of what each contributes to the output."""
        b = self.block
        units = importance_order(b.fc2.weight, dim=1)
        permute_(b.fc2.weight, 1, units, log)
        permute_(b.fc1.weight, 0, units, log)
        permute_(b.fc1.bias, 0, units, log)
        per_head = b.proj.weight.abs().reshape(b.proj.weight.shape[0], self.max_heads, self.head_dim).sum((0, 2))
        heads = torch.argsort(per_head, descending=True, stable=True)
        cols = (heads[:, None] * self.head_dim + torch.arange(self.head_dim, device=heads.device)).flatten()
        permute_(b.proj.weight, 1, cols, log)
        inner = self.max_heads * self.head_dim
        rows = torch.cat([i * inner + cols for i in range(3)])
        permute_(b.qkv.weight, 0, rows, log)
        permute_(b.qkv.bias, 0, rows, log)


class ElasticTokenMix(ElasticSupernet):
    def __init__(self, space: Any) -> None:
        super().__init__(space)
        cfg: TokenMixFile = space.config
        largest = space.layers(space.largest())
        self.embed = build_layer(largest[0])
        self.blocks = nn.ModuleList(
            ElasticAttention(cfg.dim, max(cfg.heads), cfg.head_dim, round(cfg.dim * max(cfg.mlp_ratios)))
            for _ in range(max(cfg.depths))
        )
        self.head = build_layer(largest[-1])
        with torch.no_grad():
            nn.init.normal_(self.embed.pos, std=0.02)
        self._plan(self._active)

    def _plan(self, arch: ArchConfig) -> None:
        dim = self.space.config.dim
        self._blocks_plan = [(self.blocks[p], int(b["heads"]), round(dim * b["mlp"]))
                             for p, b in enumerate(self.space.block_choices(arch)[0])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block, heads, hidden in self._blocks_plan:
            x = block(x, heads, hidden)
        return self.head(x)

    def _copy_into(self, subnet: StaticSubnet) -> None:
        layers = list(subnet.layers)
        layers[0].proj.load_state_dict(self.embed.proj.state_dict())
        with torch.no_grad():
            layers[0].pos.copy_(self.embed.pos[: layers[0].pos.shape[0]])
        for layer, (block, heads, hidden) in zip(layers[1:-1], self._blocks_plan):
            block.copy_into(layer, heads, hidden)
        layers[-1].load_state_dict(self.head.state_dict())

    def reorder_channels(self) -> list[Permutation]:
        log: list[Permutation] = []
        for block in self.blocks:
            block.reorder(log)  # type: ignore[operator]
        return log
