"""Datasets held in memory as uint8 tensors, with augmentation done on the device.

Small-image datasets (digits, CIFAR-10, small ImageFolders) are decoded once into uint8 NCHW
tensors; each batch is gathered, randomly cropped (pad-and-crop) and flipped where the tensors
live, so an epoch costs no decoding. All randomness comes from a `torch.Generator` seeded from
(seed, epoch, batch), so any batch can be recomputed exactly (that is what makes resume exact).
The val split is a seeded hold-out of the training set (for predictor building); the test set
stays separate. `MemorySource` serves this behind the `DataSource` interface, batch for batch
identical to the functions below.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nasforge.data.datasets import ImageSet
from nasforge.data.registry import DATA_SOURCES, DATASETS
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
    normalize_uint8,
)
from nasforge.errors import DataError


@dataclass(frozen=True)
class DataSplits:
    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, on the 0..1 scale
    std: tuple[float, ...]
    skipped: tuple[str, ...] = ()  # unreadable files left out (skip_bad)

    def split(self, name: str) -> ImageSet:
        check_split(name)
        out: ImageSet = getattr(self, name)
        if len(out) == 0:
            raise DataError(f"dataset {self.name}: the {name} split is empty")
        return out

    def to(self, device: torch.device | str) -> DataSplits:
        device = torch.device(device)
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    @property
    def resolution(self) -> int:
        return int(self.train.images.shape[-1])

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float, standardised per channel."""
        return normalize_uint8(images, self.mean, self.std)


# ---------------------------------------------------------------------------- loading
def load_dataset(
    dataset: str,
    resolution: int,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    train_limit: int | None = None,
    skip_bad: bool = False,
    max_pixels: int = 89_478_485,
) -> DataSplits:
    """Load a dataset into memory at `resolution` pixels (the space's largest), with a seeded val hold-out."""
    reader = DATASETS.get(dataset)(data_dir, max_pixels=max_pixels)
    return splits_in_memory(reader, dataset, resolution, val_fraction=val_fraction, split_seed=split_seed,
                            train_limit=train_limit, skip_bad=skip_bad)


def splits_in_memory(reader: Any, dataset: str, resolution: int, *, val_fraction: float, split_seed: int,
                     train_limit: int | None, skip_bad: bool) -> DataSplits:
    """`reader`'s images decoded at `resolution`, the val hold-out taken, the training mean/std computed."""
    train, test, skipped = reader.in_memory(resolution, skip_bad=skip_bad)
    rest, val_idx = holdout(len(train), val_fraction, split_seed, train_limit)
    val = train.subset(val_idx)
    train = train.subset(rest)
    if len(train) == 0:
        raise DataError(f"dataset {dataset}: no training images left after the val hold-out")
    pixels = train.images.float().div_(255.0)
    mean = tuple(float(v) for v in pixels.mean((0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in pixels.std((0, 2, 3)))
    names = tuple(reader.class_names)
    return DataSplits(dataset, train, val, test, len(names), names, mean, std, tuple(skipped))


# ---------------------------------------------------------------------------- batches
def train_batch(
    data: DataSplits, order: torch.Tensor, step: int, batch_size: int, *, seed: int, epoch: int,
    pad: int = 4, flip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step` of an epoch: gather, pad-and-crop, flip, normalise, on the data's device.

    Nothing crosses between host and device: pass `order` already on the data's device (`MemorySource`
    moves it once per epoch), and the crop offsets and flips are drawn by a generator on that device,
    seeded from (seed, epoch, step). On the CPU these are the batches nasforge always drew; on CUDA the
    draws come from the device's own generator (a different stream, just as reproducible).
    """
    split = data.train
    n = len(split)
    device = split.images.device
    idx = order[(torch.arange(batch_size, device=order.device) + step * batch_size) % n].to(device)
    gen = batch_generator(seed, 2, epoch, step, device=device)
    images = split.images[idx]
    labels = split.labels[idx]
    b, _, h, w = images.shape
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=device)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=device)
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = (oy[:, None] + torch.arange(h, device=device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=device))[:, None, None, :]
        bi = torch.arange(b, device=device)[:, None, None, None]
        ci = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[bi, ci, rows, cols]
    if flip:
        mask = torch.rand(b, generator=gen, device=device) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return data.normalize(images), labels


def eval_batches(data: DataSplits, split: str, batch_size: int, limit: int | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Un-augmented, normalised batches of a split, in order."""
    s = data.split(split)
    n = len(s) if limit is None else min(limit, len(s))
    for start in range(0, n, batch_size):
        end = min(n, start + batch_size)
        yield data.normalize(s.images[start:end]), s.labels[start:end]


def calibration_batches(data: DataSplits, images: int, batch_size: int, seed: int = 0
                        ) -> list[torch.Tensor]:
    """A fixed seeded subset of training images (un-augmented) for BN recalibration."""
    n = min(images, len(data.train))
    idx = torch.randperm(len(data.train), generator=batch_generator(seed, 3))[:n].to(data.train.images.device)
    imgs = data.train.images[idx]
    return [data.normalize(chunk) for chunk in imgs.split(batch_size)]


def resize_batch(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Bilinear resize of a float batch, as the supernet's elastic resolution does (`supernet.resize_to`)."""
    if resolution is None or (images.shape[-1] == resolution and images.shape[-2] == resolution):
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------- the source
@DATA_SOURCES.register("memory", summary="decoded once into uint8 tensors on the device; pad-crop-flip there")
class MemorySource(SourceBase):
    """The in-memory dataset behind the `DataSource` interface: GPU-resident batches for CIFAR-size data.

    Its batches are exactly `train_batch` / `eval_batches` / `calibration_batches` of `data`, sharded
    as `DistContext.shard` does; a `resolution` other than the loaded one resizes on the device.
    """

    kind = "memory"

    def __init__(self, data: DataSplits, *, normalization: Normalization, pad: int = 4, flip: bool = True,
                 selection: str = "memory") -> None:
        self.data = replace(data, mean=tuple(normalization.mean), std=tuple(normalization.std))
        self.normalization = normalization
        self.pad, self.flip = pad, flip
        self.selection = selection

    @classmethod
    def open(cls, reader: Any, settings: DataSettings, *, resolution: int, device: torch.device,
             normalization: Normalization | None = None, selection: str = "memory") -> MemorySource:
        """Decode `settings`' dataset at `resolution` and move it to `device`."""
        data = splits_in_memory(reader, settings.dataset, resolution, val_fraction=settings.val_fraction,
                                split_seed=settings.split_seed, train_limit=settings.train_limit,
                                skip_bad=settings.skip_bad)
        if normalization is None:
            normalization = (Normalization(data.mean, data.std, "dataset", len(data.train))
                             if settings.normalization == "dataset" else IMAGENET)
        return cls(data.to(device), normalization=normalization, pad=settings.pad, flip=settings.flip,
                   selection=selection)

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.data.name

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.data.class_names

    @property
    def resolution(self) -> int:
        return self.data.resolution

    @property
    def device(self) -> torch.device:
        return self.data.train.images.device

    def _split_len(self, split: str) -> int:
        return len(getattr(self.data, split))

    def labels(self, split: str, limit: int | None = None) -> torch.Tensor:
        labels = self.data.split(split).labels
        return labels if limit is None else labels[:limit]

    def to(self, device: torch.device | str) -> MemorySource:
        return MemorySource(self.data.to(device), normalization=self.normalization, pad=self.pad, flip=self.flip,
                            selection=self.selection)

    def describe(self) -> dict[str, Any]:
        r = self.resolution
        return {**super().describe(), "augment": {"pad": self.pad, "flip": self.flip},
                "skipped_files": list(self.data.skipped),
                "eval_preprocess": f"resize the whole image to {r} x {r} (bilinear), then bilinear to r x r"}

    # ------------------------------------------------------------------ batches
    def train_batches(self, epoch: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0, resolution: int | None = None) -> Batches[Batch]:
        spe = self._check_pass(batch_size, rank, world_size, start_step)

        def items() -> Iterator[tuple[Batch, tuple[str, ...]]]:
            order = epoch_order(len(self.data.train), seed, epoch).to(self.device)  # once per epoch
            for step in range(start_step, spe):
                x, y = train_batch(self.data, order, step, batch_size, seed=seed, epoch=epoch, pad=self.pad,
                                   flip=self.flip)
                if world_size > 1:
                    x, y = x[rank::world_size], y[rank::world_size]
                yield Batch(resize_batch(x, resolution), y), ()

        return Batches(items(), spe - start_step)

    def eval_batches(self, split: str, *, batch_size: int, resolution: int | None = None,
                     limit: int | None = None) -> Batches[Batch]:
        n = len(self.data.split(split))
        n = n if limit is None else min(limit, n)
        items = ((Batch(resize_batch(x, resolution), y), ())
                 for x, y in eval_batches(self.data, split, batch_size, limit))
        return Batches(items, -(-n // batch_size))

    def calibration_batches(self, images: int, *, batch_size: int, resolution: int | None = None,
                            seed: int = 0) -> Batches[torch.Tensor]:
        chunks = calibration_batches(self.data, images, batch_size, seed)
        return Batches(((resize_batch(x, resolution), ()) for x in chunks), len(chunks))


def as_source(data: Any) -> Any:
    """A `DataSource` as is; an in-memory `DataSplits` wrapped as its `MemorySource` (its own mean/std)."""
    if isinstance(data, DataSplits):
        return MemorySource(data, normalization=Normalization(data.mean, data.std, "dataset", len(data.train)))
    return data


__all__ = ["DataSplits", "ImageSet", "MemorySource", "as_source", "calibration_batches", "eval_batches", "load_dataset",
           "resize_batch", "splits_in_memory", "train_batch"]
