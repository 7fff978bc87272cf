"""Once-for-All's accuracy predictors run on nasforge archs, in numpy, and as a registered nasforge predictor.

OFA's predictor is an MLP (3 hidden layers of 400 with ReLU) over a one-hot arch encoding. OFA ships it in
two forms, both read here:

- `nas` (`ofa.nas.accuracy_predictor.AccuracyPredictor`, e.g. `ofa_resnet50_acc_predictor.pth`): keys
  `layers.N.0.*`, a bias-free output plus a constant `base_acc`; the encoding is OFA's arch encoder's
  (`MobileNetArchEncoder`, `ResNetArchEncoder`): [resolution | the family's blocks]. MobileNet: kernel of every
  block, then expand ratio of every block; ResNet: stem conv kept? (skip, keep) | width index of each slot |
  expand ratio of every block. The resolution block follows the encoder's `image_size_list`, which is not
  stored with the weights, so it is a parameter here (OFA's ResNet-50 predictor: `RESNET50_IMAGE_SIZES`).
- `tutorial` (`ofa.tutorial.accuracy_predictor`, OFA's `acc_predictor.pth` for MobileNetV3 w1.2): a plain
  `nn.Sequential` (keys `0.*`, `2.*`, `4.*`, `6.*`, output with bias); the encoding is [kernels | expand ratios
  | resolution bucket (r - 112) // 16 of 8].

Each block is one-hot over its choices, all-zero when its stage's depth skips it: the same blocks as nasforge's
own features (`SearchSpace.features`), so OFA's encoding is a fixed linear map of them (`ofa_feature_map`), and
the `ofa-mlp` predictor kind runs OFA's weights on nasforge's features inside any search. Which genes follow
the resolution is the family's business (`ofa_families.OFAAdapter.layout(space).predictor_genes`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import PredictorError
from nasforge.foreign.ofa_families import adapter
from nasforge.predictors.base import PREDICTORS, PredictorBase
from nasforge.space import SearchSpace

# The image sizes OFA's ResNet-50 tutorial gives the encoder of `ofa_resnet50_acc_predictor.pth` (no 208).
RESNET50_IMAGE_SIZES = (128, 144, 160, 176, 192, 224, 240, 256)
# OFA's `AccuracyDataset.build_acc_dataset` default: the sizes a MobileNet predictor of the `nas` form learns.
MOBILENET_IMAGE_SIZES = (128, 160, 192, 224)
TUTORIAL_BUCKETS = 8  # the tutorial form's resolution one-hot: bucket (r - 112) // 16
FORMS = ("nas", "tutorial")

Layers = list[tuple[np.ndarray, np.ndarray | None]]


def _predictor_genes(space: SearchSpace) -> tuple[int, ...]:
    found = adapter(space)
    if found is None:
        raise PredictorError(f"OFA's accuracy predictor has no encoding for family {space.family.name!r}")
    return found.layout(space).predictor_genes


def _resolution_column(r: int, form: str, image_sizes: Sequence[int], nearest: bool) -> int | None:
    """Which column of OFA's resolution block `r` sets (None: OFA's encoder does not know `r`)."""
    if form == "tutorial":
        bucket = (r - 112) // 16
        return bucket if 0 <= bucket < TUTORIAL_BUCKETS else None
    if r in image_sizes:
        return list(image_sizes).index(r)
    if not nearest:
        return None
    return int(np.argmin([abs(r - s) + (s > r) * 0.5 for s in image_sizes]))  # ties go to the smaller size


def resolution_fallback(space: SearchSpace, form: str, image_sizes: Sequence[int]) -> dict[int, int]:
    """The space's resolutions OFA's `nas` encoder does not list, each with the listed size used in its place."""
    if form != "nas":
        return {}
    return {r: int(image_sizes[_resolution_column(r, form, image_sizes, True)])  # type: ignore[index]
            for r in space.resolutions if r not in image_sizes}


def ofa_feature_map(space: SearchSpace, form: str, image_sizes: Sequence[int], *, nearest: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) with `space.features(archs) @ M + c` = OFA's encoding of the archs.

    A resolution OFA's `nas` encoder does not list maps to the nearest listed one when `nearest` (OFA's own
    encoder would fail on it); without `nearest` its row stays zero.
    """
    if form not in FORMS:
        raise PredictorError(f"unknown OFA predictor form {form!r}; expected one of {list(FORMS)}")
    genes = _predictor_genes(space)
    feature_genes, offsets = space.feature_layout
    where = {int(g): int(o) for g, o in zip(feature_genes, offsets)}
    blocks = [len(space.genes[g].choices) for g in genes]
    n_res = TUTORIAL_BUCKETS if form == "tutorial" else len(image_sizes)
    gene_start = 0 if form == "tutorial" else n_res
    res_start = sum(blocks) if form == "tutorial" else 0
    matrix = np.zeros((space.num_features, n_res + sum(blocks)))
    offset = np.zeros(n_res + sum(blocks))
    col = gene_start
    for g, size in zip(genes, blocks):
        if g in where:
            matrix[where[g] : where[g] + size, col : col + size] = np.eye(size)
        else:  # one choice: no nasforge feature; an always-active gene is always "on"
            offset[col] = 1.0
        col += size
    for i, r in enumerate(space.resolutions):
        column = _resolution_column(r, form, image_sizes, nearest)
        if column is None:
            continue
        if 0 in where:
            matrix[where[0] + i, res_start + column] = 1.0
        else:
            offset[res_start + column] = 1.0
    return matrix, offset


def read_ofa_predictor(state_dict: Mapping[str, Any]) -> tuple[str, Layers, float]:
    """(form, MLP layers as (weight, bias), base accuracy) of either OFA predictor form's state dict."""
    if isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    arrays = {str(k): np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, np.float64)
              for k, v in state_dict.items()}
    nas = sorted({int(m[1]) for k in arrays if (m := re.match(r"layers\.(\d+)\.", k))})
    if nas and "base_acc" in arrays:
        layers = []
        for i in nas:
            prefix = f"layers.{i}.0." if f"layers.{i}.0.weight" in arrays else f"layers.{i}."
            if prefix + "weight" not in arrays:
                raise PredictorError(f"not an OFA accuracy predictor: layer {i} has no weight")
            layers.append((arrays[prefix + "weight"], arrays.get(prefix + "bias")))
        return "nas", layers, float(arrays["base_acc"].reshape(-1)[0])
    plain = sorted({int(m[1]) for k in arrays if (m := re.match(r"(\d+)\.weight$", k))})
    if plain and len(arrays) == 2 * len(plain) and all(f"{i}.bias" in arrays for i in plain):
        return "tutorial", [(arrays[f"{i}.weight"], arrays[f"{i}.bias"]) for i in plain], 0.0
    raise PredictorError("not an OFA accuracy predictor: expected layers.N.* and base_acc tensors "
                         "(ofa.nas) or an nn.Sequential's N.weight / N.bias (ofa.tutorial)")


def load_ofa_predictor_file(path: str | Path) -> Mapping[str, Any]:
    """OFA's predictor file as a state dict (torch.load with weights_only: no code is unpickled)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PredictorError(f"{path}: no such OFA predictor file") from None
    except Exception as exc:  # truncated zip, garbage bytes, pickled code
        raise PredictorError(f"{path}: unreadable OFA predictor ({type(exc).__name__})") from None
    if not isinstance(obj, Mapping):
        raise PredictorError(f"{path}: not an OFA accuracy predictor state dict")
    return obj


def _mlp(x: np.ndarray, layers: Layers) -> np.ndarray:
    for weight, bias in layers[:-1]:
        x = np.maximum(x @ weight.T + (0.0 if bias is None else bias), 0.0)
    weight, bias = layers[-1]
    return (x @ weight.T + (0.0 if bias is None else bias))[:, 0]


class OFAAccuracyPredictor:
    """OFA's predictor weights evaluated on nasforge archs: `predict(archs)` equals OFA's `predict_acc`
    (`nas` form) or `predict_accuracy` (`tutorial` form), in OFA's unit (a fraction)."""

    def __init__(self, space: SearchSpace, layers: Layers, base_acc: float, image_sizes: Sequence[int],
                 form: str = "nas") -> None:
        self.space = space
        self.form = form
        self.image_sizes = tuple(int(r) for r in image_sizes) if form == "nas" else ()
        self.layers = [(np.asarray(w, np.float64), None if b is None else np.asarray(b, np.float64)) for w, b in layers]
        self.base_acc = float(base_acc)
        self.matrix, self.offset = ofa_feature_map(space, form, self.image_sizes, nearest=False)
        self.num_features = self.matrix.shape[1]
        if self.layers[0][0].shape[1] != self.num_features:
            sizes = f"image sizes {list(self.image_sizes)}" if form == "nas" else "OFA's tutorial encoding"
            raise PredictorError(
                f"OFA predictor reads {self.layers[0][0].shape[1]} features, but space '{space.name}' with "
                f"{sizes} encodes {self.num_features}"
            )

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], space: SearchSpace,
                        image_sizes: Sequence[int] | None = None) -> OFAAccuracyPredictor:
        """From either form's state dict (or a dict holding it as `state_dict`); `image_sizes` for the `nas` form."""
        form, layers, base = read_ofa_predictor(state_dict)
        if form == "nas" and image_sizes is None:
            image_sizes = default_image_sizes(space, layers[0][0].shape[1])
        return cls(space, layers, base, image_sizes or (), form)

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace, image_sizes: Sequence[int] | None = None
             ) -> OFAAccuracyPredictor:
        return cls.from_state_dict(load_ofa_predictor_file(path), space, image_sizes)

    def features(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """OFA's encoding (`arch2feature` / `spec2feats`) of each arch, one row per arch."""
        archs = [self.space.validate(a) for a in archs]
        for arch in archs:
            if _resolution_column(arch.resolution, self.form, self.image_sizes, False) is None:
                known = list(self.image_sizes) if self.form == "nas" else "112..239"
                raise PredictorError(f"resolution {arch.resolution} is not one the OFA predictor encodes ({known})")
        if not archs:
            return np.zeros((0, self.num_features))
        return self.space.features(archs).astype(np.float64) @ self.matrix + self.offset

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted accuracy of each arch, in OFA's unit (the published predictors: a fraction)."""
        return _mlp(self.features(archs), self.layers) + self.base_acc


def default_image_sizes(space: SearchSpace, num_inputs: int) -> tuple[int, ...]:
    """The image sizes a `nas`-form predictor with `num_inputs` inputs most likely learnt (OFA's defaults)."""
    n = num_inputs - sum(len(space.genes[g].choices) for g in _predictor_genes(space))
    for sizes in (MOBILENET_IMAGE_SIZES, RESNET50_IMAGE_SIZES):
        if len(sizes) == n:
            return sizes
    raise PredictorError(
        f"this OFA predictor encodes {n} image sizes; say which with --image-sizes (e.g. 128,160,192,224)"
    )


# ---------------------------------------------------------------------------------------- as a nasforge predictor


@PREDICTORS.register("ofa-mlp", summary="Once-for-All's published accuracy predictor (imported, not fitted)")
class OFAMLPPredictor(PredictorBase):
    """OFA's MLP on nasforge features: `features @ feature_map + feature_offset` is OFA's encoding; top-1 % out.

    Imported with `nasforge import-ofa --predictor FILE --run RUN`; it is OFA's trained model, so `fit` refuses.
    """

    kind = "ofa-mlp"
    fittable: ClassVar[bool] = False

    def __init__(self, num_features: int, *, seed: int = 0, feature_map: np.ndarray | None = None,
                 feature_offset: np.ndarray | None = None, layers: Layers | None = None, base_acc: float = 0.0,
                 scale: float = 100.0) -> None:
        super().__init__(num_features)
        self.feature_map = np.zeros((num_features, 0)) if feature_map is None else np.asarray(feature_map, np.float64)
        self.feature_offset = (np.zeros(self.feature_map.shape[1]) if feature_offset is None
                               else np.asarray(feature_offset, np.float64))
        self.layers: Layers = list(layers or [])
        self.base_acc, self.scale = float(base_acc), float(scale)
        self.fitted = bool(self.layers)
        if self.feature_map.shape[0] != self.num_features or (
            self.layers and self.layers[0][0].shape[1] != self.feature_map.shape[1]
        ):
            raise PredictorError(f"ofa-mlp: feature map {self.feature_map.shape} does not fit {self.num_features} "
                                 "features and the MLP's input")

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> None:
        raise PredictorError("an ofa-mlp predictor is OFA's trained model: import it with "
                             "`nasforge import-ofa --predictor FILE --run RUN`, or build another kind")

    def _predict(self, x: np.ndarray) -> np.ndarray:
        ofa = x.astype(np.float64) @ self.feature_map + self.feature_offset
        return self.scale * (_mlp(ofa, self.layers) + self.base_acc)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {"base_acc": self.base_acc, "scale": self.scale, "layers": len(self.layers),
                  "bias": [b is not None for _, b in self.layers], "num_features": self.num_features}
        arrays = {"feature_map": self.feature_map, "feature_offset": self.feature_offset}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"] = w
            if b is not None:
                arrays[f"b{i}"] = b
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> OFAMLPPredictor:
        layers = [(arrays[f"w{i}"], arrays[f"b{i}"] if has_bias else None)
                  for i, has_bias in zip(range(int(params["layers"])), params["bias"])]
        return cls(int(params["num_features"]), feature_map=arrays["feature_map"],
                   feature_offset=arrays["feature_offset"], layers=layers, base_acc=float(params["base_acc"]),
                   scale=float(params["scale"]))

    @classmethod
    def from_ofa(cls, ofa: OFAAccuracyPredictor) -> OFAMLPPredictor:
        """OFA's weights on nasforge features (resolutions OFA's `nas` encoder does not list: the nearest one)."""
        matrix, offset = ofa_feature_map(ofa.space, ofa.form, ofa.image_sizes, nearest=True)
        return cls(ofa.space.num_features, feature_map=matrix, feature_offset=offset, layers=ofa.layers,
                   base_acc=ofa.base_acc, scale=100.0)


__all__ = [
    "FORMS",
    "MOBILENET_IMAGE_SIZES",
    "RESNET50_IMAGE_SIZES",
    "OFAAccuracyPredictor",
    "OFAMLPPredictor",
    "default_image_sizes",
    "load_ofa_predictor_file",
    "ofa_feature_map",
    "read_ofa_predictor",
    "resolution_fallback",
]
