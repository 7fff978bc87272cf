"""Dataset readers (digits, CIFAR-10, ImageFolder) and image decoding, registered in `DATASETS`.

A reader knows where a dataset's images are and serves them two ways: decoded at once into uint8
tensors at one resolution (`in_memory`, for the memory source) or one sample at a time at its own
size (`samples`, for the streaming source). It never downloads. ImageFolder's file list is held as
one bytes blob plus offsets, not a Python list of paths: 1.3M path objects cost ~150 MB, and forked
DataLoader workers would copy their pages as reference counts change.

Bad files are `DataError`s naming the file: unreadable, zero bytes, or larger than `max_pixels`
(a decompression bomb is refused from its header, before any pixel is decoded). Greyscale, CMYK,
RGBA and palette images come out as RGB.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from nasforge.data.registry import DATASETS
from nasforge.data.source import data_dir_path
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


# ---------------------------------------------------------------------------- samples (streaming)
class Samples(Protocol):
    """One split, one sample at a time: what the streaming source reads (in DataLoader workers)."""

    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int: ...
    def read(self, i: int) -> torch.Tensor: ...  # uint8 RGB (3, H, W); DataError naming the sample if unreadable
    def describe(self, i: int) -> str: ...  # the file (or array slot) for messages


@dataclass(frozen=True)
class ArraySamples:
    """Images already in memory at their native size (CIFAR-10's pickles, scikit-learn's digits)."""

    images: torch.Tensor  # uint8 (N, 3, h, w)
    labels: np.ndarray
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def read(self, i: int) -> torch.Tensor:
        return self.images[i]

    def describe(self, i: int) -> str:
        return f"{self.name}[{i}]"


@dataclass(frozen=True)
class FileSamples:
    """Image files under `root`, as relative paths packed in one bytes blob (see the module docstring)."""

    root: Path
    blob: np.ndarray  # uint8: the relative paths, concatenated
    offsets: np.ndarray  # int64 (N + 1,)
    labels: np.ndarray  # int64 (N,)
    max_pixels: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.blob[self.offsets[i] : self.offsets[i + 1]].tobytes())

    def read(self, i: int) -> torch.Tensor:
        return decode_image_file(self.path(i), max_pixels=self.max_pixels)

    def describe(self, i: int) -> str:
        return str(self.path(i))


def _entries(folder: Path, kind: str) -> list[str]:
    """Names of the folders (`kind` "dir") or files ("file") in `folder`, symlinks followed.

    An entry whose link cannot be followed (a symlink to itself, a loop, a target denied) is neither: it is
    skipped with a warning naming it, never followed again, so a loop cannot hang or crash a scan.
    """
    names = []
    with os.scandir(folder) as it:
        for e in it:
            try:
                wanted = e.is_dir() if kind == "dir" else e.is_file()
            except OSError as exc:
                warnings.warn(f"{folder / e.name}: skipped ({exc.strerror or exc})", stacklevel=3)
                continue
            if wanted:
                names.append(e.name)
    return names


def scan_split(folder: Path, classes: Sequence[str], *, max_pixels: int) -> FileSamples:
    """The images of DIR/<split>/<class>/*, sorted; a class folder without images is an error."""
    known = set(classes)
    stray = sorted(n for n in _entries(folder, "dir") if not n.startswith(".") and n not in known)
    if stray:
        raise DataError(f"{folder / stray[0]}: class {stray[0]!r} has no folder in train/")
    paths: list[bytes] = []
    labels: list[int] = []
    for idx, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            continue
        files = sorted(n for n in _entries(sub, "file") if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{sub}: class folder holds no images ({' '.join(IMAGE_SUFFIXES)})")
        paths += [os.fsencode(f"{name}/{f}") for f in files]
        labels += [idx] * len(files)
    if not paths:
        raise DataError(f"{folder}: no images")
    offsets = np.zeros(len(paths) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in paths], out=offsets[1:])
    blob = np.frombuffer(b"".join(paths), dtype=np.uint8)
    return FileSamples(folder, blob, offsets, np.asarray(labels, dtype=np.int64), max_pixels)


# ---------------------------------------------------------------------------- decoding
_TORCHVISION_MODES = {"JPEG": ("RGB", "L"), "PNG": None}  # format -> PIL modes torchvision decodes (None: all)


def decode_image_file(path: Path, *, max_pixels: int) -> torch.Tensor:
    """uint8 RGB (3, H, W) of one image file, or a one-line `DataError` naming it.

    The header is read first (PIL, no pixels) to refuse images over `max_pixels`; JPEG and PNG are
    decoded by torchvision (libjpeg-turbo / libpng), anything else (CMYK JPEG, BMP, TIFF, WebP) by PIL.
    """
    try:
        with open(path, "rb") as fh:
            data = bytearray(fh.read())
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise DataError(f"{path}: empty file (0 bytes)")
    fmt, mode = _probe(data, path, max_pixels)
    modes = _TORCHVISION_MODES.get(fmt or "", ())
    decode = _torchvision_decoder()
    if decode is not None and (modes is None or mode in modes):
        try:
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (for TorchCodec) on every call
                warnings.simplefilter("ignore", DeprecationWarning)
                image = decode(torch.frombuffer(data, dtype=torch.uint8))
        except RuntimeError as exc:
            raise DataError(f"{path}: unreadable {fmt} image ({_torchvision_reason(exc)})") from None
        if image.dtype != torch.uint8:  # 16-bit PNG
            image = (image.to(torch.int32) >> 8).to(torch.uint8)
        return image
    return torch.from_numpy(np.array(open_rgb(path, max_pixels=max_pixels, data=data))).permute(2, 0, 1).contiguous()


@lru_cache(maxsize=1)
def _torchvision_decoder() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """torchvision's RGB decoder, or None where a future torchvision has dropped it (PIL decodes then)."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None
    return lambda data: decode_image(data, mode=ImageReadMode.RGB)


def open_rgb(path: Path, *, max_pixels: int, data: bytes | bytearray | None = None) -> Any:
    """The decoded PIL RGB image of `path` (the memory source's decoder), or a one-line `DataError`."""
    from PIL import Image

    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if not data:
            raise DataError(f"{path}: empty file (0 bytes)")
        _probe(data, path, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, struct.error...
        raise DataError(f"{path}: unreadable image ({_one_line(exc)})") from None


def _probe(data: bytes | bytearray, path: Path, max_pixels: int) -> tuple[str | None, str]:
    """(format, mode) from the header alone; refuses unknown formats and images over `max_pixels`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, mode, (w, h) = im.format, im.mode, im.size
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
        raise DataError(f"{path}: {size}, over the {max_pixels:,}-pixel limit (decompression-bomb guard)") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file nasforge can read (corrupt or unknown format)") from None
    except Exception as exc:  # noqa: BLE001 - malformed headers surface as many exception types
        raise DataError(f"{path}: unreadable image header ({_one_line(exc)})") from None
    if w * h > max_pixels:
        raise DataError(f"{path}: {w}x{h} = {w * h:,} pixels, over the {max_pixels:,}-pixel limit "
                        "(decompression-bomb guard)")
    return fmt, mode


def _torchvision_reason(exc: Exception) -> str:
    """torchvision's C++ errors start with 'function, file.cpp:line, '; keep the reason."""
    return re.sub(r"^.*?\.cpp:\d+, ", "", _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _resize_uint8(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images.contiguous()
    out = []
    for chunk in images.split(2048):
        x = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=chunk.shape[-1] > resolution)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


# ---------------------------------------------------------------------------- readers
class DatasetReader(Protocol):
    """What a registered dataset provides; constructed as `reader(data_dir, max_pixels=...)`."""

    class_names: tuple[str, ...]

    def count(self) -> int: ...  # train + test images, found without decoding (auto's size estimate)
    def in_memory(self, resolution: int, *, skip_bad: bool) -> tuple[ImageSet, ImageSet, tuple[str, ...]]: ...
    def samples(self) -> tuple[Samples, Samples]: ...  # (train, test) at native size


@DATASETS.register("digits")
class Digits:
    """scikit-learn's bundled 8x8 digits (1,797 images): grey 0..16 -> uint8 RGB, upsampled; fixed 20% test."""

    class_names = tuple(str(i) for i in range(10))

    def __init__(self, data_dir: str | Path | None = None, *, max_pixels: int = 0) -> None:
        pass

    def count(self) -> int:
        return 1797

    def _native(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))  # (N, 8, 8)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(2024))
        return images[:, None].expand(-1, 3, -1, -1), labels, order, len(labels) // 5

    def in_memory(self, resolution: int, *, skip_bad: bool = False) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
        images, labels, order, n_test = self._native()
        full = ImageSet(_resize_uint8(images, resolution), labels)
        return full.subset(order[n_test:].sort().values), full.subset(order[:n_test].sort().values), ()

    def samples(self) -> tuple[Samples, Samples]:
        images, labels, order, n_test = self._native()
        train, test = order[n_test:].sort().values, order[:n_test].sort().values
        return (ArraySamples(images[train].contiguous(), labels[train].numpy(), "digits/train"),
                ArraySamples(images[test].contiguous(), labels[test].numpy(), "digits/test"))


@DATASETS.register("cifar10")
class Cifar10:
    """torchvision's CIFAR-10 folder format (DIR/cifar-10-batches-py); never downloads."""

    def __init__(self, data_dir: str | Path | None, *, max_pixels: int = 0) -> None:
        root = data_dir_path(data_dir, "cifar10", "cifar-10-batches-py/")
        if not (root / "cifar-10-batches-py").is_dir():
            raise DataError(f"{root}: no CIFAR-10 here (expected {root / 'cifar-10-batches-py'}; "
                            "nasforge never downloads)")
        self.root = root
        self._sets: list[Any] | None = None

    def _load(self) -> list[Any]:
        if self._sets is None:
            from torchvision.datasets import CIFAR10

            try:
                self._sets = [CIFAR10(str(self.root), train=t, download=False) for t in (True, False)]
            except RuntimeError as exc:
                raise DataError(f"{self.root}: unreadable CIFAR-10 ({_one_line(exc)})") from None
        return self._sets

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self._load()[0].classes)

    def count(self) -> int:
        return 60_000

    def in_memory(self, resolution: int, *, skip_bad: bool = False) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
        def convert(ds: Any) -> ImageSet:
            imgs = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
            return ImageSet(_resize_uint8(imgs, resolution), torch.tensor(ds.targets, dtype=torch.int64))

        train, test = self._load()
        return convert(train), convert(test), ()

    def samples(self) -> tuple[Samples, Samples]:
        def convert(ds: Any, name: str) -> ArraySamples:
            imgs = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
            return ArraySamples(imgs, np.asarray(ds.targets, dtype=np.int64), name)

        train, test = self._load()
        return convert(train, "cifar10/train"), convert(test, "cifar10/test")


@DATASETS.register("imagefolder")
class ImageFolder:
    """DIR/train/<class>/* and DIR/val/<class>/* (or test/): the ImageNet layout."""

    def __init__(self, data_dir: str | Path | None, *, max_pixels: int = 89_478_485) -> None:
        root = data_dir_path(data_dir, "imagefolder", "train/ and val/ or test/")
        if not (root / "train").is_dir():
            raise DataError(f"{root}: no train/ folder (expected DIR/train/<class>/*.jpg)")
        held = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
        if held is None:
            raise DataError(f"{root}: no val/ or test/ folder next to train/")
        classes = sorted(n for n in _entries(root / "train", "dir") if not n.startswith("."))
        if not classes:
            raise DataError(f"{root / 'train'}: no class folders")
        self.class_names = tuple(classes)
        self.max_pixels = max_pixels
        self.train = scan_split(root / "train", classes, max_pixels=max_pixels)
        self.test = scan_split(held, classes, max_pixels=max_pixels)

    def count(self) -> int:
        return len(self.train) + len(self.test)

    def in_memory(self, resolution: int, *, skip_bad: bool = False) -> tuple[ImageSet, ImageSet, tuple[str, ...]]:
        """Every image decoded once (PIL) and squashed to `resolution` x `resolution`."""
        train, bad_train = _decode_all(self.train, resolution, skip_bad)
        test, bad_test = _decode_all(self.test, resolution, skip_bad)
        return train, test, bad_train + bad_test

    def samples(self) -> tuple[Samples, Samples]:
        return self.train, self.test


def _decode_all(files: FileSamples, resolution: int, skip_bad: bool) -> tuple[ImageSet, tuple[str, ...]]:
    from PIL import Image

    images = torch.empty((len(files), 3, resolution, resolution), dtype=torch.uint8)
    keep = torch.ones(len(files), dtype=torch.bool)
    bad: list[str] = []
    for i in range(len(files)):
        path = files.path(i)
        try:
            im = open_rgb(path, max_pixels=files.max_pixels)
        except DataError:
            if not skip_bad:
                raise
            keep[i] = False
            bad.append(str(path))
            continue
        if im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.BILINEAR)
        images[i] = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
    labels = torch.from_numpy(files.labels.copy())
    if bad:
        if not bool(keep.any()):
            raise DataError(f"{files.root}: no readable images ({len(bad)} skipped)")
        return ImageSet(images[keep], labels[keep]), tuple(bad)
    return ImageSet(images, labels), ()


__all__ = ["IMAGE_SUFFIXES", "ArraySamples", "Cifar10", "DatasetReader", "Digits", "FileSamples", "ImageFolder",
           "ImageSet", "Samples", "decode_image_file", "open_rgb", "scan_split"]
