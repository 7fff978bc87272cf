"""The streaming source: images decoded and augmented per batch in DataLoader workers, never cached.

For data too large to hold decoded (ImageNet: 1.28M images), each batch is read from disk,
decoded (torchvision), augmented as the papers do (`nasforge.data.augment`) and collated as uint8
in a worker process, pinned, moved to the device and normalised there. At most
`workers x prefetch` batches exist at a time, so memory does not grow with the dataset.

Determinism: a DataLoader item is a whole batch (this rank's share of global batch `step`); which
samples it holds comes from `epoch_order(seed, epoch)` and every random choice of a sample's
augmentation from a generator seeded by (seed, epoch, position in the epoch). Nothing depends on
the worker that happens to run it, so 0 or 8 workers, one rank or several, and a run resumed at
any step all see the same pixels. A `DataError` inside a worker travels back as data and is
raised again in the main process, the same one line.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from nasforge.data.augment import AugmentConfig, eval_view, train_view
from nasforge.data.datasets import Samples
from nasforge.data.registry import DATA_SOURCES
from nasforge.data.source import (
    IMAGENET,
    Batch,
    Batches,
    DataSettings,
    Normalization,
    SourceBase,
    batch_generator,
    check_split,
    epoch_order,
    holdout,
    share_positions,
)
from nasforge.errors import DataError

MAX_CONSECUTIVE_BAD = 64  # skip_bad: more unreadable samples in a row than this means a broken dataset
Loaded = tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]  # uint8 images, labels, skipped files


@dataclass(frozen=True)
class _Split:
    """A split as positions into a reader's samples (val is a hold-out of the training samples)."""

    samples: Samples
    ids: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def read(self, i: int) -> torch.Tensor:
        return self.samples.read(int(self.ids[i]))

    def label(self, i: int) -> int:
        return int(self.samples.labels[self.ids[i]])

    def describe(self, i: int) -> str:
        return self.samples.describe(int(self.ids[i]))


# ---------------------------------------------------------------------------- work done in workers
def _guarded(fn: Callable[[], Loaded]) -> tuple[Any, ...]:
    """Run a batch; a DataError comes back as its message (a worker's exception would arrive as a traceback)."""
    try:
        return (*fn(), None)
    except DataError as exc:
        return None, None, (), str(exc)


def _identity(item: Any) -> Any:
    return item


class _TrainTask(torch.utils.data.Dataset):
    """Item k: this rank's share of batch `start_step + k` of one epoch, decoded and augmented."""

    def __init__(self, split: _Split, *, epoch: int, seed: int, batch_size: int, rank: int, world_size: int,
                 steps: Sequence[int], resolution: int, augment: AugmentConfig, flip: bool, skip_bad: bool) -> None:
        self.split, self.epoch, self.seed, self.batch_size = split, epoch, seed, batch_size
        self.rank, self.world_size, self.steps = rank, world_size, list(steps)
        self.resolution, self.augment, self.flip, self.skip_bad = resolution, augment, flip, skip_bad
        self.order = epoch_order(len(split), seed, epoch).numpy()

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> tuple[Any, ...]:
        return _guarded(lambda: self._batch(self.steps[k]))

    def _batch(self, step: int) -> Loaded:
        images, labels, bad = [], [], []
        for p in share_positions(step, self.batch_size, self.rank, self.world_size).tolist():
            i, image = self._readable(p, bad)
            gen = batch_generator(self.seed, 4, self.epoch, p)
            images.append(train_view(image, self.resolution, gen, self.augment, self.flip))
            labels.append(self.split.label(i))
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64), tuple(bad)

    def _readable(self, p: int, bad: list[str]) -> tuple[int, torch.Tensor]:
        """The sample at epoch position p, or with skip_bad the next readable one in the epoch order.

        Only the sample that belongs at p counts as skipped; a bad neighbour tried as its replacement
        is counted at its own position.
        """
        n = len(self.order)
        for k in range(min(n, MAX_CONSECUTIVE_BAD)):
            i = int(self.order[(p + k) % n])
            try:
                return i, self.split.read(i)
            except DataError:
                if not self.skip_bad:
                    raise
                if k == 0:
                    bad.append(self.split.describe(i))
        raise DataError(f"{self.split.describe(int(self.order[p % n]))}: this and the next "
                        f"{min(n, MAX_CONSECUTIVE_BAD) - 1} samples are unreadable")


class _ViewTask(torch.utils.data.Dataset):
    """Item k: the un-augmented eval view (resize shorter side, centre crop) of a chunk of samples."""

    def __init__(self, split: _Split, chunks: list[np.ndarray], *, resolution: int, crop: float,
                 skip_bad: bool) -> None:
        self.split, self.chunks, self.resolution, self.crop, self.skip_bad = split, chunks, resolution, crop, skip_bad

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: int) -> tuple[Any, ...]:
        return _guarded(lambda: self._chunk(self.chunks[k]))

    def _chunk(self, ids: np.ndarray) -> Loaded:
        images, labels, bad = [], [], []
        for i in ids.tolist():
            try:
                image = self.split.read(i)
            except DataError:
                if not self.skip_bad:
                    raise
                bad.append(self.split.describe(i))
                continue
            images.append(eval_view(image, self.resolution, self.crop))
            labels.append(self.split.label(i))
        if not images:
            return (torch.empty((0, 3, self.resolution, self.resolution), dtype=torch.uint8),
                    torch.empty(0, dtype=torch.int64), tuple(bad))
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64), tuple(bad)


def default_workers() -> int:
    """This process's share of the CPUs it may use (torchrun starts LOCAL_WORLD_SIZE ranks per machine), 1..8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


# ---------------------------------------------------------------------------- the source
@DATA_SOURCES.register("stream", summary="decoded and augmented per batch in DataLoader workers; nothing cached")
class StreamSource(SourceBase):
    """Images read per batch through a torch DataLoader (see the module docstring)."""

    kind = "stream"

    def __init__(self, name: str, class_names: Sequence[str], splits: dict[str, _Split], *, resolution: int,
                 normalization: Normalization, settings: DataSettings, device: torch.device | str = "cpu",
                 selection: str = "stream") -> None:
        self.name = name
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self._splits = splits
        self.resolution = resolution
        self.normalization = normalization
        self.settings = settings
        self.device = torch.device(device)
        self.selection = selection
        self.workers = default_workers() if settings.workers is None else settings.workers

    @classmethod
    def open(cls, reader: Any, settings: DataSettings, *, resolution: int, device: torch.device,
             normalization: Normalization | None = None, selection: str = "stream") -> StreamSource:
        """Index `reader`'s samples (no decoding), hold out val, and estimate the dataset's mean/std if asked."""
        train, test = reader.samples()
        rest, val = holdout(len(train), settings.val_fraction, settings.split_seed, settings.train_limit)
        if len(rest) == 0:
            raise DataError(f"dataset {settings.dataset}: no training images left after the val hold-out")
        splits = {"train": _Split(train, rest.numpy()), "val": _Split(train, val.numpy()),
                  "test": _Split(test, np.arange(len(test), dtype=np.int64))}
        source = cls(settings.dataset, reader.class_names, splits, resolution=resolution,
                     normalization=normalization or IMAGENET, settings=settings, device=device, selection=selection)
        if normalization is None and settings.normalization == "dataset":
            source.normalization = source.estimate_normalization(settings.norm_images, seed=settings.split_seed)
        return source

    def estimate_normalization(self, images: int, *, seed: int = 0) -> Normalization:
        """Per-channel mean/std of a fixed seeded sample of training images (eval view at `resolution`).

        Running float64 sums over the sample: no float copy of the dataset, and the same numbers
        for any number of workers.
        """
        n = min(images, len(self._splits["train"]))
        ids = torch.randperm(len(self._splits["train"]), generator=batch_generator(seed, 6))[:n].numpy()
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        pixels = 0
        for x, _, _ in self._load(self._view_task("train", ids, self.resolution, 256)):
            v = x.to(torch.float64).div_(255.0)
            total += v.sum((0, 2, 3))
            squares += v.square_().sum((0, 2, 3))  # in place: one float64 copy of the batch, not two
            pixels += v.shape[0] * v.shape[2] * v.shape[3]
        if pixels == 0:
            raise DataError(f"dataset {self.name}: no readable training images to estimate the normalisation from")
        mean = total / pixels
        std = (squares / pixels - mean.square()).clamp_(min=0).sqrt_()
        return Normalization(tuple(float(v) for v in mean), tuple(max(float(v), 1e-3) for v in std), "dataset", n)

    # ------------------------------------------------------------------ identity
    def _split_len(self, split: str) -> int:
        return len(self._splits[split])

    def _split(self, split: str) -> _Split:
        check_split(split)
        out = self._splits[split]
        if len(out) == 0:
            raise DataError(f"dataset {self.name}: the {split} split is empty")
        return out

    def labels(self, split: str, limit: int | None = None) -> torch.Tensor:
        s = self._split(split)
        ids = s.ids if limit is None else s.ids[:limit]
        return torch.from_numpy(s.samples.labels[ids]).to(self.device)

    def to(self, device: torch.device | str) -> StreamSource:
        out = copy.copy(self)
        out.device = torch.device(device)
        return out

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {**super().describe(), "workers": self.workers, "prefetch": s.prefetch, "skip_bad": s.skip_bad,
                "augment": {"flip": s.flip, **asdict(s.augment)},
                "eval_preprocess": f"resize the shorter side to round(r / {s.augment.eval_crop}), centre crop r x r"}

    # ------------------------------------------------------------------ batches
    def train_batches(self, epoch: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0, resolution: int | None = None) -> Batches[Batch]:
        spe = self._check_pass(batch_size, rank, world_size, start_step)
        s = self.settings
        task = _TrainTask(self._split("train"), epoch=epoch, seed=seed, batch_size=batch_size, rank=rank,
                          world_size=world_size, steps=range(start_step, spe), resolution=resolution or self.resolution,
                          augment=s.augment, flip=s.flip, skip_bad=s.skip_bad)
        return Batches(self._on_device(self._load(task)), len(task))

    def eval_batches(self, split: str, *, batch_size: int, resolution: int | None = None,
                     limit: int | None = None) -> Batches[Batch]:
        n = len(self._split(split))
        ids = np.arange(n if limit is None else min(limit, n), dtype=np.int64)
        task = self._view_task(split, ids, resolution or self.resolution, batch_size)
        return Batches(self._on_device(self._load(task)), len(task))

    def calibration_batches(self, images: int, *, batch_size: int, resolution: int | None = None,
                            seed: int = 0) -> Batches[torch.Tensor]:
        """The same seeded subset of training images as the memory source, un-augmented (eval view)."""
        n_train = len(self._split("train"))
        ids = torch.randperm(n_train, generator=batch_generator(seed, 3))[: min(images, n_train)].numpy()
        task = self._view_task("train", ids, resolution or self.resolution, batch_size)
        return Batches(((None if b is None else b[0], bad) for b, bad in self._on_device(self._load(task))), len(task))

    # ------------------------------------------------------------------ plumbing
    def _view_task(self, split: str, ids: np.ndarray, resolution: int, batch_size: int) -> _ViewTask:
        if batch_size <= 0:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        chunks = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
        return _ViewTask(self._split(split), chunks, resolution=resolution, crop=self.settings.augment.eval_crop,
                         skip_bad=self.settings.skip_bad)

    def _load(self, task: torch.utils.data.Dataset) -> Iterator[Loaded]:
        """uint8 batches from the task, in order, through a DataLoader; DataErrors raised here, one line."""
        from torch.utils.data import DataLoader

        workers = self.workers
        loader = DataLoader(task, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_identity,
                            pin_memory=self.device.type == "cuda",
                            prefetch_factor=self.settings.prefetch if workers > 0 else None)
        for x, y, bad, error in loader:
            if error is not None:
                raise DataError(error)
            yield x, y, bad

    def _on_device(self, loaded: Iterator[Loaded]) -> Iterator[tuple[Batch | None, tuple[str, ...]]]:
        """Normalised batches on the device; a batch whose images were all skipped reports only its files.

        The float batch is yielded without a name in this frame: the consumer alone holds it, so it is
        freed as soon as the consumer lets go (a local here would keep it alive through the next forward).
        """
        for x, y, bad in loaded:
            if x.shape[0] == 0:
                yield None, bad
                continue
            yield Batch(self.normalization.apply(x.to(self.device, non_blocking=True)),
                        y.to(self.device, non_blocking=True)), bad


__all__ = ["MAX_CONSECUTIVE_BAD", "StreamSource", "default_workers"]
