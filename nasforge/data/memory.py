"""Datasets held in memory as uint8 tensors, with augmentation done on the device.

Small-image datasets (digits, CIFAR-10, small ImageFolders) are decoded once into uint8 NCHW
tensors; each batch is gathered, randomly cropped (pad-and-crop) and flipped where the tensors
live, so an epoch costs no decoding. All randomness comes from a `torch.Generator` seeded from
(seed, epoch, batch), so any batch can be recomputed exactly (that is what makes resume exact).
The val split is a seeded hold-out of the training set (for predictor building); the test set
stays separate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nasforge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,)
    index: torch.Tensor | None = None  # positions in the source split (train or test) the images came from

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> ImageSet:
        source = self.index[index] if self.index is not None else index
        return ImageSet(self.images[index], self.labels[index], source)

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device), self.index)


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

    def split(self, name: str) -> ImageSet:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; expected train, val or test")
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
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std


# ---------------------------------------------------------------------------- loading
def load_dataset(
    dataset: str,
    resolution: int,
    *,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    train_limit: int | None = None,
) -> DataSplits:
    """Load a dataset into memory at `resolution` pixels (the space's largest), with a seeded val hold-out."""
    if dataset == "digits":
        train, test, names = _digits(resolution)
    elif dataset == "cifar10":
        train, test, names = _cifar10(data_dir, resolution)
    elif dataset == "imagefolder":
        train, test, names = _imagefolder(data_dir, resolution)
    else:
        raise DataError(f"unknown dataset {dataset!r}; expected digits, cifar10 or imagefolder")
    gen = torch.Generator().manual_seed(10_007 + split_seed)
    order = torch.randperm(len(train), generator=gen)
    n_val = int(round(len(train) * val_fraction))
    val = train.subset(order[:n_val].sort().values)
    rest = order[n_val:]
    if train_limit is not None:
        rest = rest[:train_limit]
    train = train.subset(rest.sort().values)
    if len(train) == 0:
        raise DataError(f"dataset {dataset}: no training images left after the val hold-out")
    pixels = train.images.float().div_(255.0)
    mean = tuple(float(v) for v in pixels.mean((0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in pixels.std((0, 2, 3)))
    return DataSplits(dataset, train, val, test, len(names), tuple(names), mean, std)


def _resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images.contiguous()
    out = []
    for chunk in images.split(2048):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=chunk.shape[-1] > resolution)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _digits(resolution: int) -> tuple[ImageSet, ImageSet, list[str]]:
    """scikit-learn's bundled 8x8 digits (1,797 images): grey 0..16 -> uint8 RGB, upsampled; fixed 20% test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))  # (N, 8, 8)
    images = _resize_uint8(images[:, None].expand(-1, 3, -1, -1), resolution)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(2024))
    n_test = len(labels) // 5
    full = ImageSet(images, labels)
    return (full.subset(order[n_test:].sort().values), full.subset(order[:n_test].sort().values),
            [str(i) for i in range(10)])


def _cifar10(data_dir: str | Path | None, resolution: int) -> tuple[ImageSet, ImageSet, list[str]]:
    """torchvision's CIFAR-10 folder format (DIR/cifar-10-batches-py); never downloads."""
    if not data_dir:
        raise DataError("dataset cifar10 needs --data-dir DIR holding cifar-10-batches-py/")
    root = Path(data_dir)
    if not (root / "cifar-10-batches-py").is_dir():
        raise DataError(f"{root}: no CIFAR-10 here (expected {root / 'cifar-10-batches-py'}; nasforge never downloads)")
    from torchvision.datasets import CIFAR10

    try:
        sets = [CIFAR10(str(root), train=t, download=False) for t in (True, False)]
    except RuntimeError as exc:
        raise DataError(f"{root}: unreadable CIFAR-10 ({exc})") from None

    def convert(ds: CIFAR10) -> ImageSet:
        imgs = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
        return ImageSet(_resize_uint8(imgs, resolution), torch.tensor(ds.targets, dtype=torch.int64))

    return convert(sets[0]), convert(sets[1]), list(sets[0].classes)


def _imagefolder(data_dir: str | Path | None, resolution: int) -> tuple[ImageSet, ImageSet, list[str]]:
    """DIR/train/<class>/* and DIR/val/<class>/* (or test/), decoded once and resized to `resolution`."""
    if not data_dir:
        raise DataError("dataset imagefolder needs --data-dir DIR holding train/ and val/ or test/")
    root = Path(data_dir)
    if not (root / "train").is_dir():
        raise DataError(f"{root}: no train/ folder (expected DIR/train/<class>/*.jpg)")
    held = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if held is None:
        raise DataError(f"{root}: no val/ or test/ folder next to train/")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root / 'train'}: no class folders")
    return _read_folder(root / "train", classes, resolution), _read_folder(held, classes, resolution), classes


def _read_folder(folder: Path, classes: list[str], resolution: int) -> ImageSet:
    from PIL import Image

    files: list[tuple[Path, int]] = []
    for idx, name in enumerate(classes):
        sub = folder / name
        if sub.is_dir():
            files += [(p, idx) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{folder}: no images")
    images = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (resolution, resolution):
                    im = im.resize((resolution, resolution), Image.BILINEAR)
                images[i] = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
        except OSError as exc:
            raise DataError(f"{path}: unreadable image ({exc})") from None
    return ImageSet(images, torch.tensor([c for _, c in files], dtype=torch.int64))


# ---------------------------------------------------------------------------- batches
def batch_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator whose stream depends only on (seed, *keys)."""
    mixed = np.random.SeedSequence([seed & 0xFFFFFFFF, *keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(mixed[0] >> np.uint64(1)))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of epoch `epoch` (CPU int64)."""
    return torch.randperm(n, generator=batch_generator(seed, 1, epoch))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches only (drop_last), so every step sees the same batch size; at least one step."""
    return max(1, n // batch_size)


def train_batch(
    data: DataSplits, order: torch.Tensor, step: int, batch_size: int, *, seed: int, epoch: int,
    pad: int = 4, flip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step` of an epoch: gather, pad-and-crop, flip, normalise, on the data's device."""
    split = data.train
    n = len(split)
    idx = order[(torch.arange(batch_size) + step * batch_size) % n]
    gen = batch_generator(seed, 2, epoch, step)
    device = split.images.device
    images = split.images[idx.to(device)]
    labels = split.labels[idx.to(device)]
    b, _, h, w = images.shape
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(device)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(device)
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = (oy[:, None] + torch.arange(h, device=device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=device))[:, None, None, :]
        bi = torch.arange(b, device=device)[:, None, None, None]
        ci = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[bi, ci, rows, cols]
    if flip:
        mask = (torch.rand(b, generator=gen) < 0.5).to(device)
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
