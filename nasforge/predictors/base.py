"""The accuracy-predictor protocol, its on-disk format and the checks every loader makes.

A saved predictor is a folder with two files and no pickle anywhere:
  predictor.json  format, model kind and hyper-parameters, metadata (space name + fingerprint,
                  supernet checkpoint sha256, dataset, N, metrics, feature dim), sha256 of the weights;
  weights.npz     the numeric arrays (read with allow_pickle=False).
The weights are written first and the JSON last, each atomically; the JSON records the weights'
hash, so a folder caught half-rewritten is refused instead of silently mixing two models.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import PredictorError, PredictorMismatchError
from nasforge.io import atomic_write_bytes, atomic_write_json
from nasforge.registry import Registry
from nasforge.space import SearchSpace

FORMAT = "nasforge-predictor"
FORMAT_VERSION = 1
META_FILE = "predictor.json"
WEIGHTS_FILE = "weights.npz"
RUN_PREDICTOR_DIR = "predictor"



@runtime_checkable
class AccuracyPredictor(Protocol):
    """Maps feature rows (`SearchSpace.features`) to top-1 accuracy in percent."""

    kind: ClassVar[str]
    num_features: int
    metadata: dict[str, Any]

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> None: ...

    def predict(self, features: np.ndarray) -> np.ndarray: ...

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able hyper-parameters and the numeric arrays that rebuild the fitted model."""
        ...

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> AccuracyPredictor: ...


# Model kinds, each a class registered with `@PREDICTORS.register(kind)`; a module is imported only when one of
# its kinds is used, so torch / scikit-learn load only when needed.
PREDICTORS: Registry[type[AccuracyPredictor]] = Registry(
    "predictor model",
    plural="predictors",
    modules={
        "nasforge.predictors.mlp": ("mlp",),
        "nasforge.predictors.ensemble": ("ensemble",),
        "nasforge.predictors.sklearn_models": ("ridge", "gp", "gbm"),
        "nasforge.foreign.ofa_predictor": ("ofa-mlp",),  # imported from OFA's file, not fitted
    },
    error=PredictorError,
)
MODELS = PREDICTORS  # the name earlier releases used


class PredictorBase:
    """Shared input checks and conveniences; subclasses implement fit/_predict/state/from_state."""

    kind: ClassVar[str] = ""

    def __init__(self, num_features: int) -> None:
        self.num_features = int(num_features)
        self.metadata: dict[str, Any] = {}
        self.fitted = False

    def check_features(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise PredictorError(
                f"{self.kind} predictor expects features of width {self.num_features}, got shape {tuple(x.shape)}"
            )
        return x

    def check_fit_inputs(self, features: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.check_features(features)
        y = np.asarray(accuracy, dtype=np.float64).reshape(-1)
        if len(y) != len(x):
            raise PredictorError(f"{len(x)} feature rows but {len(y)} accuracies")
        if len(y) < 2:
            raise PredictorError(f"a predictor needs at least 2 measurements, got {len(y)}")
        if not np.all(np.isfinite(y)):
            raise PredictorError("accuracies contain NaN or infinity")
        return x, y

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Top-1 accuracy (%) per row, float64, shape (n,)."""
        if not self.fitted:
            raise PredictorError(f"the {self.kind} predictor is not fitted yet")
        x = self.check_features(features)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self._predict(x), dtype=np.float64).reshape(-1)

    def _predict(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_archs(self, space: SearchSpace, archs: Sequence[ArchConfig]) -> np.ndarray:
        return self.predict(space.features(list(archs)))


def model_class(kind: str) -> type:
    return PREDICTORS.get(kind)


def make_predictor(kind: str, num_features: int, *, seed: int = 0, **options: Any) -> AccuracyPredictor:
    """A fresh, unfitted predictor of `kind` for feature rows of width `num_features`."""
    return model_class(kind)(num_features, seed=seed, **options)  # type: ignore[no-any-return]


def predictor_metadata(
    space: SearchSpace,
    *,
    checkpoint_sha256: str,
    dataset: str,
    num_measurements: int,
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What every saved predictor records so loaders can refuse the wrong space or supernet."""
    return {
        "space": space.name,
        "space_fingerprint": space.fingerprint,
        "checkpoint_sha256": checkpoint_sha256,
        "dataset": dataset,
        "num_measurements": int(num_measurements),
        "feature_dim": space.num_features,
        "metrics": dict(metrics or {}),
        **extra,
    }


# ---------------------------------------------------------------------- saving / loading
def save_predictor(predictor: AccuracyPredictor, directory: str | Path, metadata: dict[str, Any]) -> Path:
    """Write `predictor.json` + `weights.npz` into `directory`; returns the folder."""
    directory = Path(directory)
    params, arrays = predictor.state()
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    blob = buf.getvalue()
    meta = {**metadata, "model": predictor.kind, "feature_dim": predictor.num_features}
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": predictor.kind,
        "params": params,
        "metadata": meta,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write_bytes(directory / WEIGHTS_FILE, blob)
    atomic_write_json(directory / META_FILE, doc)
    predictor.metadata = meta
    return directory


def _predictor_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.name == META_FILE:
        path = path.parent
    if not (path / META_FILE).is_file():
        raise PredictorError(f"{path}: no {META_FILE} here; build one with `nasforge build-predictor --run RUN_DIR`")
    return path


def read_predictor_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a saved predictor without loading its weights."""
    return _read_doc(_predictor_dir(path))["metadata"]  # type: ignore[no-any-return]


def _read_doc(directory: Path) -> dict[str, Any]:
    try:
        doc = json.loads((directory / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PredictorError(f"{directory / META_FILE}: unreadable predictor metadata ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PredictorError(f"{directory / META_FILE}: not a nasforge predictor file")
    if doc.get("format_version") != FORMAT_VERSION:
        raise PredictorError(
            f"{directory / META_FILE}: predictor format version {doc.get('format_version')} "
            f"is not supported (expected {FORMAT_VERSION})"
        )
    return doc


def load_predictor(
    path: str | Path, space: SearchSpace, *, checkpoint_sha256: str | None = None
) -> AccuracyPredictor:
    """Load a saved predictor, refusing one built for another space (or supernet, when given)."""
    directory = _predictor_dir(path)
    doc = _read_doc(directory)
    meta = doc["metadata"]
    check_compatible(meta, space, checkpoint_sha256=checkpoint_sha256, source=str(directory))
    weights_path = directory / WEIGHTS_FILE
    try:
        blob = weights_path.read_bytes()
    except OSError as exc:
        raise PredictorError(f"{weights_path}: cannot read predictor weights ({exc.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != doc.get("weights_sha256"):
        raise PredictorError(f"{weights_path}: weights do not match {META_FILE} (partly rewritten?); rebuild it")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # object arrays, pickles, bad zips
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PredictorError(f"{weights_path}: not a plain-array predictor weights file ({reason})") from None
    try:
        predictor = model_class(doc["model"]).from_state(doc["params"], arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PredictorError(f"{directory}: predictor weights do not fit its {doc['model']} model ({exc})") from None
    predictor.metadata = meta
    return predictor  # type: ignore[no-any-return]


def check_compatible(
    meta: dict[str, Any], space: SearchSpace, *, checkpoint_sha256: str | None = None, source: str = "predictor"
) -> None:
    """Raise `PredictorMismatchError` (one line) if `meta` was not built for this space / supernet."""
    if meta.get("space_fingerprint") != space.fingerprint:
        raise PredictorMismatchError(
            f"{source}: predictor was built for space '{meta.get('space')}' "
            f"(fingerprint {meta.get('space_fingerprint')}), not '{space.name}' ({space.fingerprint})"
        )
    if int(meta.get("feature_dim", -1)) != space.num_features:
        raise PredictorMismatchError(
            f"{source}: predictor expects {meta.get('feature_dim')} features; space '{space.name}' has "
            f"{space.num_features}"
        )
    if checkpoint_sha256 is not None and meta.get("checkpoint_sha256") != checkpoint_sha256:
        raise PredictorMismatchError(
            f"{source}: predictor was built for supernet checkpoint {str(meta.get('checkpoint_sha256'))[:12]}, "
            f"not this run's {checkpoint_sha256[:12]}; rebuild it with `nasforge build-predictor`"
        )


def find_run_predictor(run_dir: str | Path) -> Path:
    """The default predictor folder of a run (RUN_DIR/predictor/); an error if none was built yet."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_PREDICTOR_DIR
    if not (path / META_FILE).is_file():
        raise PredictorError(
            f"{run_dir}: no accuracy predictor built yet; run `nasforge build-predictor --run {run_dir}`"
        )
    return path


def load_run_predictor(run: Any, path: str | Path | None = None) -> AccuracyPredictor:
    """Load `path` (default: the run's own predictor) checked against the run's space AND checkpoint.

    `run` is anything with `.path`, `.space` and `.checkpoint_sha256` (a `nasforge.train.runs.Run`).
    """
    where = find_run_predictor(run.path) if path is None else path
    return load_predictor(where, run.space, checkpoint_sha256=run.checkpoint_sha256)
