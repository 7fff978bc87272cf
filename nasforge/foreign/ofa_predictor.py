"""Once-for-All's accuracy predictor (`ofa.nas.accuracy_predictor`) run on nasforge archs, in numpy.

OFA's predictor is an MLP (3 hidden layers of 400 with ReLU, a bias-free output, plus a constant
`base_acc`) over OFA's one-hot arch encoding (`MobileNetArchEncoder`, `ResNetArchEncoder`):

  MobileNetV3: [resolution | kernel of blocks 0..19 | expand ratio of blocks 0..19]
  ResNet:      [resolution | stem conv kept? (skip, keep) | width index of 6 slots | expand ratio of blocks 0..17]

Each block is one-hot over its choices, all-zero when its stage's depth skips it. The resolution block
follows the encoder's `image_size_list`, which is not stored with the weights, so it is a parameter here
(OFA's published ResNet-50 predictor: `RESNET50_IMAGE_SIZES`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import PredictorError
from nasforge.space import SearchSpace

# The image sizes OFA's ResNet-50 tutorial gives the encoder of `ofa_resnet50_acc_predictor.pth` (no 208).
RESNET50_IMAGE_SIZES = (128, 144, 160, 176, 192, 224, 240, 256)

Encoder = Callable[[SearchSpace, ArchConfig], list[np.ndarray]]


def _onehot(value: float, choices: Sequence[float], on: bool = True) -> np.ndarray:
    out = np.zeros(len(choices))
    if on:
        out[list(choices).index(value)] = 1.0
    return out


def _blocks(arch: ArchConfig, values: Sequence[float], slots: Sequence[Any]) -> list[np.ndarray]:
    return [_onehot(v, slot.choices, arch.depths[slot.stage] > slot.position) for v, slot in zip(values, slots)]


def _mobilenet(space: SearchSpace, arch: ArchConfig) -> list[np.ndarray]:
    """MobileNetArchEncoder.arch2feature after the resolution: kernels, then expand ratios, block by block."""
    return (_blocks(arch, arch.kernel_sizes, space.kernel_slots)
            + _blocks(arch, arch.expand_ratios, space.expand_slots))


def _resnet(space: SearchSpace, arch: ArchConfig) -> list[np.ndarray]:
    """ResNetArchEncoder.arch2feature after the resolution: stem kept, width indices, expand ratios."""
    widths = [_onehot(w, choices) for w, choices in zip(arch.width_mults, space.width_choices)]
    return [_onehot(arch.depths[0], (0, 1)), *widths, *_blocks(arch, arch.expand_ratios, space.expand_slots)]


_ENCODERS: dict[str, Encoder] = {"mobilenetv3": _mobilenet, "resnet": _resnet}


class OFAAccuracyPredictor:
    """OFA's `AccuracyPredictor` weights evaluated on nasforge archs: `predict(archs)` equals OFA's `predict_acc`."""

    def __init__(self, space: SearchSpace, layers: Sequence[tuple[np.ndarray, np.ndarray | None]], base_acc: float,
                 image_sizes: Sequence[int]) -> None:
        if space.family.name not in _ENCODERS:
            raise PredictorError(f"OFA's accuracy predictor has no encoding for family {space.family.name!r}")
        self.space = space
        self.image_sizes = tuple(int(r) for r in image_sizes)
        self.layers = [(np.asarray(w, np.float64), None if b is None else np.asarray(b, np.float64)) for w, b in layers]
        self.base_acc = float(base_acc)
        self._encode = _ENCODERS[space.family.name]
        self.num_features = len(self.image_sizes) + sum(len(v) for v in self._encode(space, space.largest()))
        if self.layers[0][0].shape[1] != self.num_features:
            raise PredictorError(
                f"OFA predictor reads {self.layers[0][0].shape[1]} features, but space '{space.name}' with "
                f"image sizes {list(self.image_sizes)} encodes {self.num_features}"
            )

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], space: SearchSpace,
                        image_sizes: Sequence[int]) -> OFAAccuracyPredictor:
        """From `AccuracyPredictor.state_dict()` (or a dict holding it as `state_dict`)."""
        if isinstance(state_dict.get("state_dict"), Mapping):
            state_dict = state_dict["state_dict"]
        arrays = {str(k): np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for k, v in state_dict.items()}
        indices = sorted({int(m[1]) for k in arrays if (m := re.match(r"layers\.(\d+)\.", k))})
        if not indices or "base_acc" not in arrays:
            raise PredictorError("not an OFA accuracy predictor: expected layers.N.* and base_acc tensors")
        layers = []
        for i in indices:
            prefix = f"layers.{i}.0." if f"layers.{i}.0.weight" in arrays else f"layers.{i}."
            if prefix + "weight" not in arrays:
                raise PredictorError(f"not an OFA accuracy predictor: layer {i} has no weight")
            layers.append((arrays[prefix + "weight"], arrays.get(prefix + "bias")))
        return cls(space, layers, float(arrays["base_acc"].reshape(-1)[0]), image_sizes)

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace, image_sizes: Sequence[int]) -> OFAAccuracyPredictor:
        """Read OFA's predictor file (torch.load with weights_only: no code is unpickled)."""
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise PredictorError(f"{path}: no such OFA predictor file") from None
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise PredictorError(f"{path}: unreadable OFA predictor ({type(exc).__name__})") from None
        if not isinstance(obj, Mapping):
            raise PredictorError(f"{path}: not an OFA accuracy predictor state dict")
        return cls.from_state_dict(obj, space, image_sizes)

    def features(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """OFA's encoding (`arch2feature`) of each arch, one row per arch."""
        rows = []
        for arch in archs:
            arch = self.space.validate(arch)
            if arch.resolution not in self.image_sizes:
                raise PredictorError(f"resolution {arch.resolution} is not one the OFA predictor encodes "
                                     f"({list(self.image_sizes)})")
            rows.append(np.concatenate([_onehot(arch.resolution, self.image_sizes), *self._encode(self.space, arch)]))
        return np.stack(rows) if rows else np.zeros((0, self.num_features))

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted accuracy of each arch, in OFA's unit (the published predictors: a fraction)."""
        x = self.features(archs)
        for weight, bias in self.layers[:-1]:
            x = np.maximum(x @ weight.T + (0.0 if bias is None else bias), 0.0)
        weight, bias = self.layers[-1]
        return (x @ weight.T + (0.0 if bias is None else bias))[:, 0] + self.base_acc


__all__ = ["RESNET50_IMAGE_SIZES", "OFAAccuracyPredictor"]
