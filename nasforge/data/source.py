"""The one data interface every stage reads through, the settings that pick a source, and `open_source`.

A `DataSource` yields `Batch(inputs, targets)` on its device for (epoch, step, rank) (image sources:
normalised float NCHW inputs; other input kinds: `nasforge.data.inputs`) and names its task's metric. The
trainer, BN recalibration, evaluation, predictor measurement, export verification and finetuning
never ask whether the images sit decoded in memory or stream from disk. Which samples make up a
batch is decided here, once, for every source (`epoch_order`, `batch_indices`), from (seed, epoch,
step) alone, so resuming from any step and reading with any number of workers or ranks replays the
same batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from nasforge.config import Validated, check
from nasforge.data.augment import AugmentConfig
from nasforge.data.batch import Batch
from nasforge.data.registry import DATA_SOURCES, DATASETS, LOADER_CHOICES, LOADERS_AUTO
from nasforge.errors import ConfigError, DataError

T = TypeVar("T")
SPLITS = ("train", "val", "test")
NORMALIZATION_KINDS = ("dataset", "imagenet")

# ---------------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class Normalization:
    """Per-channel mean/std on the 0..1 scale and where they came from; recorded in runs and export sidecars."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    kind: str = "dataset"  # dataset: estimated from training images | imagenet: the usual constants
    images: int | None = None  # training images the dataset estimate used (None: not an estimate)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std), "images": self.images}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        """The inverse of `to_dict` (a run's record), so later stages normalise exactly as training did."""
        try:
            mean = tuple(float(v) for v in d["mean"])
            std = tuple(float(v) for v in d["std"])
            kind = str(d.get("kind", "dataset"))
            images = None if d.get("images") is None else int(d["images"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"normalization record {d!r}: expected mean, std (3 numbers each) and kind") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or kind not in NORMALIZATION_KINDS:
            raise ConfigError(f"normalization record {d!r}: expected 3 means, 3 positive stds, kind dataset|imagenet")
        return cls(mean, std, kind, images)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float, standardised per channel (the same arithmetic as `DataSplits.normalize`)."""
        return normalize_uint8(images, self.mean, self.std)


@functools.lru_cache(maxsize=64)
def _norm_constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per (constants, device): a per-batch torch.tensor(..., device=cuda) is a blocking host copy.
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


def normalize_uint8(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 -> float / 255, standardised per channel; the constants live on the images' device once.

    In place on the one float copy: `(x / 255 - m) / s` as an expression holds two float batches at
    once (a 256-image 160 px eval batch: 2 x 79 MB); the same arithmetic in place holds one.
    """
    m, s = _norm_constants(tuple(float(v) for v in mean), tuple(float(v) for v in std), images.device)
    return images.to(torch.float32, copy=True).div_(255.0).sub_(m).div_(s)


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet")


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DataSettings(Validated):
    """What to read and how: the data half of a run config (the resolution comes from the space)."""

    dataset: str = field(default="digits", metadata=check(choices=DATASETS))
    data_dir: str | None = None
    loader: str = field(default=LOADERS_AUTO, metadata=check(choices=LOADER_CHOICES))  # auto | memory | stream
    # auto streams when N x 3 x R x R decoded bytes exceed this
    memory_budget_gib: float = field(default=2.0, metadata=check(ge=0))
    # seeded hold-out of train (for predictor building); the test split stays apart
    val_fraction: float = field(default=0.1, metadata=check(ge=0, lt=1))
    split_seed: int = field(default=0, metadata=check(ge=0))
    train_limit: int | None = field(default=None, metadata=check(gt=0))
    normalization: Literal["dataset", "imagenet"] = "dataset"
    norm_images: int = field(default=1000, metadata=check(gt=0))  # stream: images the dataset mean/std comes from
    skip_bad: bool = False  # unreadable images are skipped and counted instead of stopping the run
    # larger images are refused (decompression-bomb guard; PIL's default)
    max_pixels: int = field(default=89_478_485, metadata=check(gt=0))
    pad: int = field(default=4, metadata=check(ge=0))  # memory: pad-and-crop augmentation
    flip: bool = True  # both sources: random horizontal flip
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # stream: the papers' augmentation
    # stream: DataLoader worker processes (None: this rank's share of the CPUs, <= 8)
    workers: int | None = field(default=None, metadata=check(ge=0))
    prefetch: int = field(default=2, metadata=check(gt=0))  # stream: batches each worker prepares ahead

    def validate(self) -> DataSettings:
        """Settings are checked when built (`nasforge.config`); kept for callers that expect the call."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




# ---------------------------------------------------------------------------- the interface
class Batches(Iterator[T], Generic[T]):
    """One pass over a source's batches; `skipped` names the unreadable files skipped so far (`skip_bad`).

    A training pass replaces each bad sample by the next good one in the epoch order (batches keep
    their size); evaluation and calibration drop it. Read `skipped_count` at the end of an epoch.
    """

    def __init__(self, items: Iterator[tuple[T | None, tuple[str, ...]]], length: int) -> None:
        self._items = items  # (batch, files skipped for it); batch None when every image in it was skipped
        self._length = length
        self.skipped: list[str] = []

    def __iter__(self) -> Batches[T]:
        return self

    def __next__(self) -> T:
        while True:
            item, bad = next(self._items)
            self.skipped.extend(bad)
            if item is not None:
                return item

    def __len__(self) -> int:
        """Batches in the whole pass (an upper bound for eval passes that drop bad images)."""
        return self._length

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)


@runtime_checkable
class DataSource(Protocol):
    """Batches for (epoch, step, rank); whether they are held in memory or streamed is the source's business."""

    @property
    def name(self) -> str: ...  # the dataset
    @property
    def kind(self) -> str: ...  # the registered source name (memory, stream)
    @property
    def num_classes(self) -> int: ...
    @property
    def class_names(self) -> tuple[str, ...]: ...
    @property
    def normalization(self) -> Normalization: ...
    @property
    def resolution(self) -> int: ...  # the default side of yielded images (the space's largest)
    @property
    def device(self) -> torch.device: ...
    @property
    def selection(self) -> str: ...  # why this source was chosen (auto's arithmetic), for the run record
    @property
    def metric(self) -> str: ...  # the task's metric, a `nasforge.train.metrics.METRICS` name (images: top1)

    def split_size(self, split: str) -> int: ...
    def steps_per_epoch(self, batch_size: int) -> int: ...
    def labels(self, split: str, limit: int | None = None) -> torch.Tensor: ...
    def batch_indices(self, epoch: int, step: int, *, batch_size: int, seed: int, rank: int = 0,
                      world_size: int = 1) -> torch.Tensor: ...
    def train_batches(self, epoch: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0, resolution: int | None = None) -> Batches[Batch]: ...
    def eval_batches(self, split: str, *, batch_size: int, resolution: int | None = None,
                     limit: int | None = None) -> Batches[Batch]: ...
    def calibration_batches(self, images: int, *, batch_size: int, resolution: int | None = None,
                            seed: int = 0) -> Batches[Any]: ...  # inputs only (images: NCHW tensors)
    def to(self, device: torch.device | str) -> DataSource: ...
    def describe(self) -> dict[str, Any]: ...


class SourceBase:
    """What every source computes the same way: sizes, the sample plan, argument checks, the run record."""

    kind = ""
    metric = "top1"  # image classification; a source of another task names its own (`nasforge.train.metrics`)
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    normalization: Normalization
    resolution: int
    device: torch.device
    selection: str

    def split_size(self, split: str) -> int:
        check_split(split)
        return self._split_len(split)

    def _split_len(self, split: str) -> int:
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        return steps_per_epoch(self._split_len("train"), batch_size)

    def batch_indices(self, epoch: int, step: int, *, batch_size: int, seed: int, rank: int = 0,
                      world_size: int = 1) -> torch.Tensor:
        """Positions in the train split of this rank's share of batch `step` of `epoch`."""
        n = self._split_len("train")
        check_share(batch_size, rank, world_size)
        return epoch_order(n, seed, epoch)[share_positions(step, batch_size, rank, world_size) % n]

    def _check_pass(self, batch_size: int, rank: int, world_size: int, start_step: int) -> int:
        spe = self.steps_per_epoch(batch_size)
        check_share(batch_size, rank, world_size)
        if not 0 <= start_step <= spe:
            raise ConfigError(f"start_step {start_step} is outside the epoch's {spe} steps")
        return spe

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.name, "loader": self.kind, "selection": self.selection,
                "resolution": self.resolution, "classes": self.num_classes, "metric": self.metric,
                "splits": {s: self._split_len(s) for s in SPLITS},
                "normalization": self.normalization.to_dict()}


# ---------------------------------------------------------------------------- the sample plan
def batch_generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` whose stream depends only on (seed, *keys).

    The seed is mixed on the host (no device work); a CUDA generator draws its numbers on the device,
    so augmentation randomness never needs a host-to-device copy. On the CPU the stream is the one
    nasforge has always drawn; on CUDA it is a different (Philox) stream, but equally a function of the keys.
    """
    mixed = np.random.SeedSequence([seed & 0xFFFFFFFF, *keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator(device=device).manual_seed(int(mixed[0] >> np.uint64(1)))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of epoch `epoch` (CPU int64)."""
    return torch.randperm(n, generator=batch_generator(seed, 1, epoch))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches only (drop_last), so every step sees the same batch size; at least one step."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    return max(1, n // batch_size)


def share_positions(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Positions in the epoch order of this rank's share of a global batch: `batch[rank::world_size]`.

    The same slice `DistContext.shard` takes, so a rank reading only its share sees exactly what it
    would have kept of the whole batch; together the ranks cover each global batch once.
    """
    return torch.arange(rank, batch_size, world_size, dtype=torch.int64) + step * batch_size


def check_share(batch_size: int, rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} of world size {world_size}: expected 0 <= rank < world_size")
    if batch_size < world_size:
        raise ConfigError(f"batch_size {batch_size} is smaller than the world size {world_size}")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected train, val or test")


def holdout(n_train: int, val_fraction: float, split_seed: int, train_limit: int | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) positions within the training split: a seeded hold-out every run of a dataset shares."""
    gen = torch.Generator().manual_seed(10_007 + split_seed)
    order = torch.randperm(n_train, generator=gen)
    n_val = round(n_train * val_fraction)
    rest = order[n_val:]
    if train_limit is not None:
        rest = rest[:train_limit]
    return rest.sort().values, order[:n_val].sort().values


# ---------------------------------------------------------------------------- choosing a source
def decoded_bytes(images: int, resolution: int) -> int:
    """What the memory source holds: every image as uint8 3 x R x R."""
    return images * 3 * resolution * resolution


def open_source(
    settings: DataSettings,
    *,
    resolution: int,
    device: torch.device | str = "cpu",
    normalization: Normalization | None = None,
) -> DataSource:
    """The source `settings.loader` names, or for `auto` the memory source when the decoded dataset fits
    `memory_budget_gib` and the streaming source otherwise; `source.selection` says which and why.

    Pass a run's recorded `normalization` to normalise exactly as it did (no re-estimate).
    """
    settings = settings.validate()
    if resolution <= 0:
        raise ConfigError(f"resolution must be positive, got {resolution}")
    reader = DATASETS.get(settings.dataset)(settings.data_dir, max_pixels=settings.max_pixels)
    loader = settings.loader
    if loader == LOADERS_AUTO:
        n = reader.count()
        size = decoded_bytes(n, resolution)
        budget = int(settings.memory_budget_gib * 2**30)
        loader = "memory" if size <= budget else "stream"
        selection = (f"auto: {n} images x 3x{resolution}x{resolution} uint8 = {size / 2**30:.2f} GiB "
                     f"{'<=' if size <= budget else '>'} budget {settings.memory_budget_gib:g} GiB -> {loader}")
    else:
        selection = f"{loader}: chosen by data.loader"
    opener: Callable[..., DataSource] = DATA_SOURCES.get(loader).open
    return opener(reader, settings, resolution=resolution, device=torch.device(device),
                  normalization=normalization, selection=selection)


def data_dir_path(data_dir: str | Path | None, dataset: str, needs: str) -> Path:
    """The dataset's folder, or one line saying what it must hold (nasforge never downloads)."""
    if not data_dir:
        raise DataError(f"dataset {dataset} needs --data-dir DIR holding {needs}")
    return Path(data_dir)


__all__ = [
    "IMAGENET", "Batch", "Batches", "DataSettings", "DataSource", "Normalization",
    "SourceBase", "batch_generator", "check_share", "check_split", "decoded_bytes", "epoch_order", "holdout",
    "normalize_uint8", "open_source", "share_positions", "steps_per_epoch",
]
