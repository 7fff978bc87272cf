"""The `vit` family's blocks (`nasforge.families.vit`): one function per block, run by both the static module
(an extracted subnet's layer) and the elastic supernet on sliced weights (AutoFormer-style first rows/columns).

Parameter names follow timm's `VisionTransformer` (`blocks.i.attn.qkv`, `blocks.i.mlp.fc1`, ...), so a timm
state dict maps onto `ElasticViT` by renaming three prefixes (`timm_to_supernet`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.layers import LayerSpec
from nasforge.supernet.base import ElasticSupernet
from nasforge.supernet.ops import Permutation, importance_order, permute_
from nasforge.supernet.static import StaticSubnet

LN_EPS = 1e-6  # timm's ViT LayerNorm


def _tokens(spec: LayerSpec) -> int:
    return int(spec.attr("tokens", 0))  # type: ignore[arg-type]


def resample_pos(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Position embeddings (1, 1 + g*g, d) for a `grid` x `grid` patch grid: the class token's kept, the patch
    part resampled bicubically with antialiasing, as timm's `resample_abs_pos_embed` does."""
    old = int(round((pos.shape[1] - 1) ** 0.5))
    if old == grid:
        return pos
    cls, patches = pos[:, :1], pos[:, 1:]
    d = patches.shape[-1]
    patches = patches.reshape(1, old, old, d).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([cls, patches.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pos.dtype)], dim=1)


# ---------------------------------------------------------------------------------------------- block bodies
def embed(x: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, stride: int, cls: torch.Tensor,
          pos: torch.Tensor) -> torch.Tensor:
    """Patches -> tokens, class token first, plus position embeddings (timm's `_pos_embed`)."""
    tokens = F.conv2d(x, conv_w, conv_b, stride).flatten(2).transpose(1, 2)
    return torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos


def block(x: torch.Tensor, w: tuple[torch.Tensor, ...], heads: int) -> torch.Tensor:
    """One pre-norm block on given weights (norm1 w/b, qkv w/b, proj w/b, norm2 w/b, fc1 w/b, fc2 w/b)."""
    n1_w, n1_b, qkv_w, qkv_b, proj_w, proj_b, n2_w, n2_b, fc1_w, fc1_b, fc2_w, fc2_b = w
    # Sizes from the weights, not from `x.shape`: an ONNX export with a dynamic batch traces x's sizes as tensors,
    # and LayerNorm's shape and the attention scale must stay constants there.
    dim, head_dim = n1_w.shape[0], qkv_w.shape[0] // (3 * heads)
    q, k, v = F.linear(F.layer_norm(x, (dim,), n1_w, n1_b, LN_EPS), qkv_w, qkv_b).unflatten(
        -1, (3, heads, head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
    scores = (q @ k.transpose(-2, -1)) * (head_dim**-0.5)
    y = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
    x = x + F.linear(y, proj_w, proj_b)
    return x + F.linear(F.gelu(F.linear(F.layer_norm(x, (dim,), n2_w, n2_b, LN_EPS), fc1_w, fc1_b)), fc2_w, fc2_b)


def head(x: torch.Tensor, norm_w: torch.Tensor, norm_b: torch.Tensor, fc_w: torch.Tensor,
         fc_b: torch.Tensor) -> torch.Tensor:
    """Final norm, the class token, the classifier (timm's `global_pool='token'`)."""
    return F.linear(F.layer_norm(x[:, 0], (norm_w.shape[0],), norm_w, norm_b, LN_EPS), fc_w, fc_b)


# ---------------------------------------------------------------------------------------------- static modules
class ViTEmbed(nn.Module):
    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.proj = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.out_channels))
        self.pos_embed = nn.Parameter(torch.zeros(1, _tokens(spec), spec.out_channels))

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> ViTEmbed:
        return cls(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return embed(x, self.proj.weight, self.proj.bias, self.proj.stride[0], self.cls_token, self.pos_embed)


class _Attn(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.qkv, self.proj = nn.Linear(dim, 3 * inner), nn.Linear(inner, dim)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, hidden: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=LN_EPS), nn.LayerNorm(dim, eps=LN_EPS)
        self.attn, self.mlp = _Attn(dim, heads * head_dim), _Mlp(dim, hidden)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> ViTBlock:
        return cls(spec.in_channels, int(spec.attr("heads", 1)), int(spec.attr("head_dim", 1)),  # type: ignore[arg-type]
                   spec.mid_channels)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The block's weights in `block`'s order."""
        a, m = self.attn, self.mlp
        return (self.norm1.weight, self.norm1.bias, a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias,
                self.norm2.weight, self.norm2.bias, m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return block(x, self.tensors(), self.heads)


class ViTHead(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, num_classes)

    @classmethod
    def from_spec(cls, spec: LayerSpec, dropout: float = 0.0) -> ViTHead:
        return cls(spec.in_channels, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return head(x, self.norm.weight, self.norm.bias, self.head.weight, self.head.bias)


# ---------------------------------------------------------------------------------------------- the supernet
class ElasticViTBlock(ViTBlock):
    """The largest block; `sliced(d, heads, hidden)` are a subnet's weights (first features, heads, units)."""

    def sliced(self, dim: int, heads: int, hidden: int) -> tuple[torch.Tensor, ...]:
        inner, used = self.heads * self.head_dim, heads * self.head_dim
        rows = torch.cat([torch.arange(i * inner, i * inner + used) for i in range(3)]).to(self.attn.qkv.weight.device)
        n1_w, n1_b, qkv_w, qkv_b, proj_w, proj_b, n2_w, n2_b, fc1_w, fc1_b, fc2_w, fc2_b = self.tensors()
        return (n1_w[:dim], n1_b[:dim], qkv_w[rows, :dim], qkv_b[rows], proj_w[:dim, :used], proj_b[:dim],
                n2_w[:dim], n2_b[:dim], fc1_w[:hidden, :dim], fc1_b[:hidden], fc2_w[:dim, :hidden], fc2_b[:dim])

    @torch.no_grad()
    def reorder(self, log: list[Permutation]) -> None:
        """Most important MLP units and heads first (DynaBERT): L1 of the output-projection weights that read
        them. The block computes the same function afterwards."""
        a, m = self.attn, self.mlp
        units = importance_order(m.fc2.weight, dim=1)
        for tensor, dim in ((m.fc2.weight, 1), (m.fc1.weight, 0), (m.fc1.bias, 0)):
            permute_(tensor, dim, units, log)
        per_head = a.proj.weight.abs().reshape(a.proj.weight.shape[0], self.heads, self.head_dim).sum((0, 2))
        order = torch.argsort(per_head, descending=True, stable=True)
        cols = (order[:, None] * self.head_dim + torch.arange(self.head_dim, device=order.device)).flatten()
        permute_(a.proj.weight, 1, cols, log)
        rows = torch.cat([i * self.heads * self.head_dim + cols for i in range(3)])
        permute_(a.qkv.weight, 0, rows, log)
        permute_(a.qkv.bias, 0, rows, log)


class ElasticViT(ElasticSupernet):
    def __init__(self, space: Any) -> None:
        super().__init__(space)
        cfg = space.config  # the family's ViTFile (not imported: the family imports this module)
        largest = space.layers(space.largest())
        dim = max(cfg.embed_dims)
        self.embed = ViTEmbed(largest[0])
        self.blocks = nn.ModuleList(
            ElasticViTBlock(dim, max(cfg.heads), cfg.head_dim, round(dim * max(cfg.mlp_ratios)))
            for _ in range(max(cfg.depths)))
        self.head = ViTHead(dim, space.num_classes)
        with torch.no_grad():
            nn.init.normal_(self.embed.pos_embed, std=0.02)
            nn.init.normal_(self.embed.cls_token, std=1e-6)
        self._plan(self._active)

    def _plan(self, arch: ArchConfig) -> None:
        cfg = self.space.config
        self._dim, self._grid = cfg.embed_dim(arch), arch.resolution // cfg.patch
        self._blocks_plan = [(self.blocks[p], int(b["heads"]), round(self._dim * b["mlp"]))
                             for p, b in enumerate(self.space.block_choices(arch)[0])]

    def _embed_weights(self) -> tuple[torch.Tensor, ...]:
        e, d = self.embed, self._dim
        return e.proj.weight[:d], e.proj.bias[:d], e.cls_token[..., :d], resample_pos(e.pos_embed[..., :d], self._grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv_w, conv_b, cls, pos = self._embed_weights()
        x = embed(x, conv_w, conv_b, self.embed.proj.stride[0], cls, pos)
        for b, heads, hidden in self._blocks_plan:
            x = block(x, b.sliced(self._dim, heads, hidden), heads)  # type: ignore[operator]
        h, d = self.head, self._dim
        return head(x, h.norm.weight[:d], h.norm.bias[:d], h.head.weight[:, :d], h.head.bias)

    @torch.no_grad()
    def _copy_into(self, subnet: StaticSubnet) -> None:
        layers = list(subnet.layers)
        e = layers[0]
        for target, source in zip((e.proj.weight, e.proj.bias, e.cls_token, e.pos_embed), self._embed_weights()):
            target.copy_(source)
        for layer, (b, heads, hidden) in zip(layers[1:-1], self._blocks_plan):
            for target, source in zip(layer.tensors(), b.sliced(self._dim, heads, hidden)):  # type: ignore[operator]
                target.copy_(source)
        h, d = self.head, self._dim
        for target, source in zip(layers[-1].parameters(), (h.norm.weight[:d], h.norm.bias[:d], h.head.weight[:, :d],
                                                            h.head.bias)):
            target.copy_(source)

    def reorder_channels(self) -> list[Permutation]:
        log: list[Permutation] = []
        for b in self.blocks:
            b.reorder(log)  # type: ignore[operator]
        return log


def timm_to_supernet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm `VisionTransformer` state dict under `ElasticViT`'s names (the blocks' names are timm's)."""
    renames = (("patch_embed.proj.", "embed.proj."), ("cls_token", "embed.cls_token"),
               ("pos_embed", "embed.pos_embed"), ("norm.", "head.norm."), ("head.", "head.head."))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        new = next((to + name[len(frm):] for frm, to in renames if name.startswith(frm)), name)
        out[new] = tensor
    return out
