"""The data interface: both sources behave alike, the streaming source is deterministic, bounded and strict.

Tiny ImageFolders (a few dozen JPEG/PNG images of 20-80 px) are written with PIL into tmp dirs.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import nasforge.data.datasets as datasets_mod
from nasforge.data import (
    DATA_SOURCES,
    DATASETS,
    AugmentConfig,
    DataSettings,
    DataSource,
    MemorySource,
    Normalization,
    StreamSource,
    calibration_batches,
    decode_image_file,
    epoch_order,
    eval_batches,
    load_dataset,
    open_source,
    train_batch,
)
from nasforge.data.augment import AUTO_AUGMENTS, eval_view, random_resized_crop_box, train_view
from nasforge.data.source import batch_generator
from nasforge.errors import ConfigError, DataError

# the data-source conformance suite's helpers (its contract test runs from tests/test_conformance.py)
from nasforge.testing.conformance.data_sources import (
    collect,
    make_folder,
    same_batches,
    settings,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("folder"))


# ---------------------------------------------------------------------------- registries and selection
def test_registries_list_datasets_sources_and_policies():
    assert DATASETS.names() == ("digits", "cifar10", "imagefolder")
    assert DATA_SOURCES.names() == ("memory", "stream")
    assert DATA_SOURCES.get("memory") is MemorySource and DATA_SOURCES.get("stream") is StreamSource
    assert AUTO_AUGMENTS.names() == ("none", "randaugment", "autoaugment")
    assert all(DATA_SOURCES.summary(n) for n in DATA_SOURCES.names())
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'; expected one of digits, cifar10, imagefolder"):
        open_source(DataSettings(dataset="mnist"), resolution=32)
    with pytest.raises(ConfigError, match="expected one of auto, memory, stream"):
        open_source(DataSettings(loader="disk"), resolution=32)
    with pytest.raises(ConfigError, match="auto_augment"):
        open_source(DataSettings(augment=AugmentConfig(auto_augment="trivial")), resolution=32)


def test_auto_chooses_by_decoded_size(folder):
    n = 3 * 8 + 3 * 3
    small = open_source(settings(folder, loader="auto", memory_budget_gib=1.0), resolution=32)
    assert small.kind == "memory" and f"auto: {n} images x 3x32x32" in small.selection
    big = open_source(settings(folder, loader="auto", memory_budget_gib=(n * 3 * 32 * 32 - 1) / 2**30),
                      resolution=32)
    assert big.kind == "stream" and big.selection.endswith("-> stream")
    assert isinstance(small, DataSource) and isinstance(big, DataSource)
    assert big.describe()["selection"] == big.selection


# ---------------------------------------------------------------------------- both sources, one contract
def test_memory_source_is_the_legacy_functions_batch_for_batch():
    data = load_dataset("digits", 24)
    src = open_source(DataSettings(dataset="digits", loader="memory"), resolution=24)
    order = epoch_order(len(data.train), 3, 1)
    batches = src.train_batches(1, batch_size=64, seed=3)
    assert len(batches) == len(data.train) // 64
    for step, (x, y) in enumerate(batches):
        ex, ey = train_batch(data, order, step, 64, seed=3, epoch=1)
        assert torch.equal(x, ex) and torch.equal(y, ey)
    for (x, y), (ex, ey) in zip(src.eval_batches("val", batch_size=50), eval_batches(data, "val", 50), strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    for x, ex in zip(src.calibration_batches(100, batch_size=40), calibration_batches(data, 100, 40), strict=True):
        assert torch.equal(x, ex)
    from nasforge.supernet import resize_to

    (x, _), = list(src.eval_batches("test", batch_size=8, limit=8, resolution=16))
    assert torch.equal(x, resize_to(data.normalize(data.test.images[:8]), 16))
    assert src.normalization == Normalization(data.mean, data.std, "dataset", len(data.train))


def test_sources_agree_on_evaluation(tmp_path):
    """Same preprocessing (images already at the eval size, crop 1.0, ImageNet constants): same tensors, accuracy."""
    root = make_folder(tmp_path, train=4, held=6, fixed=24)
    common = {"augment": AugmentConfig(eval_crop=1.0), "val_fraction": 0.0}
    mem = open_source(settings(root, loader="memory", **common), resolution=24)
    stream = open_source(settings(root, loader="stream", **common), resolution=24)
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))

    def accuracy(src) -> tuple[float, list[torch.Tensor]]:
        correct, xs = 0, []
        with torch.no_grad():
            for x, y in src.eval_batches("test", batch_size=5):
                correct += int((model(x).argmax(1) == y).sum())
                xs.append(x)
        return correct / src.split_size("test"), xs

    (acc_m, xs_m), (acc_s, xs_s) = accuracy(mem), accuracy(stream)
    assert acc_m == acc_s
    assert all(torch.equal(a, b) for a, b in zip(xs_m, xs_s, strict=True))


def test_digits_streams_with_the_memory_sources_splits():
    mem = open_source(DataSettings(dataset="digits", loader="memory"), resolution=32)
    stream = open_source(DataSettings(dataset="digits", loader="stream", workers=0, normalization="imagenet"),
                         resolution=32)
    for split in ("train", "val", "test"):
        assert mem.split_size(split) == stream.split_size(split)
        assert torch.equal(mem.labels(split), stream.labels(split))
    (x, y), = list(stream.train_batches(0, batch_size=16, seed=0, start_step=stream.steps_per_epoch(16) - 1))
    assert x.shape == (16, 3, 32, 32) and int(y.max()) <= 9


# ---------------------------------------------------------------------------- streaming determinism
def test_stream_batches_do_not_depend_on_workers(folder):
    aug = AugmentConfig(color_jitter=0.4, auto_augment="randaugment")
    runs = []
    for workers in (0, 2):
        src = open_source(settings(folder, workers=workers, augment=aug, normalization="dataset",
                                   norm_images=12), resolution=40)
        runs.append((src.normalization, collect(src.train_batches(0, batch_size=6, seed=1)),
                     collect(src.eval_batches("test", batch_size=4))))
    (n0, t0, e0), (n2, t2, e2) = runs
    assert n0 == n2 and n0.kind == "dataset" and n0.images == 12
    assert same_batches(t0, t2) and same_batches(e0, e2)


def test_augmentations_draw_only_from_their_generator():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 255, (3, 50, 70), dtype=np.uint8))
    for policy in AUTO_AUGMENTS.names():
        cfg = AugmentConfig(color_jitter=0.3, auto_augment=policy)
        torch.manual_seed(123)  # the global RNG must not matter
        a = train_view(image, 32, batch_generator(0, 4, 0, 5), cfg)
        torch.manual_seed(999)
        b = train_view(image, 32, batch_generator(0, 4, 0, 5), cfg)
        assert a.shape == (3, 32, 32) and a.dtype == torch.uint8 and torch.equal(a, b)
    views = {train_view(image, 32, batch_generator(0, 4, 0, p), AugmentConfig()).sum().item() for p in range(8)}
    assert len(views) > 1
    for p in range(200):
        top, left, h, w = random_resized_crop_box(50, 70, (0.08, 1.0), (3 / 4, 4 / 3), batch_generator(1, p))
        assert 0 <= top and top + h <= 50 and 0 <= left and left + w <= 70
        assert 0.08 * 3500 * 0.9 <= h * w <= 3500
    assert eval_view(image, 32).shape == (3, 32, 32)  # shorter side to round(32 / 0.875) = 37, centre crop
    square = image[:, :32, :32]
    assert torch.equal(eval_view(square, 32, crop=1.0), square)


# ---------------------------------------------------------------------------- memory: nothing cached
def test_stream_decodes_every_epoch_and_caches_nothing(folder, monkeypatch):
    src = open_source(settings(folder), resolution=32)
    decoded: list[str] = []
    real = datasets_mod.decode_image_file

    def counting(path, **kw):
        decoded.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(datasets_mod, "decode_image_file", counting)
    for epoch in (0, 1):
        for _ in src.train_batches(epoch, batch_size=6, seed=0):
            pass
    # a source that kept decoded images would read each of the 18 files once, not once per use
    assert len(decoded) == 2 * 18 and len(set(decoded)) == 18
    tensors = [v for v in vars(src).values() if isinstance(v, torch.Tensor)]
    assert not tensors


# ---------------------------------------------------------------------------- bad data
def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb's header) with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("kind, workers", [("corrupt", 0), ("corrupt", 2), ("empty", 0), ("truncated", 0),
                                           ("bomb", 0)])
def test_bad_file_is_one_line_data_error_naming_it(tmp_path, kind, workers):
    root = make_folder(tmp_path, train=4, held=2)
    bad = root / "train" / "dog" / f"bad.{'jpg' if kind == 'truncated' else 'png'}"
    good = (root / "train" / "dog" / "000.jpg").read_bytes()
    content = {"corrupt": bytes(range(256)) * 3, "empty": b"", "truncated": good[: len(good) // 2],
               "bomb": png_header_only(30_000, 30_000)}[kind]
    bad.write_bytes(content)
    src = open_source(settings(root, workers=workers, val_fraction=0.0), resolution=24)
    with pytest.raises(DataError) as info:
        for _ in src.train_batches(0, batch_size=13, seed=0):
            pass
    message = str(info.value)
    assert str(bad) in message and "\n" not in message and "Traceback" not in message
    if kind == "empty":
        assert "0 bytes" in message
    if kind == "bomb":
        assert "900,000,000 pixels" in message and "decompression-bomb" in message
        with pytest.raises(DataError, match="decompression-bomb"):
            open_source(settings(root, loader="memory"), resolution=24)


@pytest.mark.parametrize("loader", DATA_SOURCES.names())
def test_class_folder_without_images_is_an_error(tmp_path, loader):
    root = make_folder(tmp_path, train=2, held=1)
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"train/emu: class folder holds no images"):
        open_source(settings(root, loader=loader), resolution=24)


@pytest.mark.parametrize("mode, fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"),
                                       ("LA", "PNG"), ("L", "PNG"), ("RGB", "BMP"), ("RGBA", "WEBP")])
def test_image_modes_become_rgb(tmp_path, mode, fmt):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 255, (21, 33, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"img.{fmt.lower()}"
    image.save(path, fmt)
    out = decode_image_file(path, max_pixels=10**8)
    expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    assert out.dtype == torch.uint8 and out.shape == (3, 21, 33)
    assert torch.equal(out, expected)


def test_pixel_limit_refuses_large_images_from_the_header(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"big.png: 40x30 = 1,200 pixels, over the 1,000-pixel limit"):
        decode_image_file(tmp_path / "big.png", max_pixels=1000)
    assert decode_image_file(tmp_path / "big.png", max_pixels=1200).shape == (3, 30, 40)


def test_sixteen_bit_png_becomes_eight_bit_rgb(tmp_path):
    arr = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    out = decode_image_file(tmp_path / "deep.png", max_pixels=10**8)
    assert out.dtype == torch.uint8 and out.shape == (3, 20, 30)
    assert torch.equal(out[0], torch.from_numpy((arr >> 8).astype(np.uint8)))


def test_skip_bad_replaces_counts_and_reports(tmp_path):
    root = make_folder(tmp_path, train=4, held=2)
    bad = [root / "train" / "cat" / "x.jpg", root / "train" / "fox" / "y.png", root / "val" / "dog" / "z.png"]
    for path in bad:
        path.write_bytes(b"not an image")
    stream = open_source(settings(root, skip_bad=True, val_fraction=0.0), resolution=24)
    batches = stream.train_batches(0, batch_size=7, seed=0)  # 14 training files: two full batches, all visited
    shapes = [x.shape[0] for x, _ in batches]
    assert shapes == [7, 7] and batches.skipped_count == 2 and sorted(batches.skipped) == sorted(map(str, bad[:2]))
    evals = stream.eval_batches("test", batch_size=4)
    assert sum(x.shape[0] for x, _ in evals) == 6 and evals.skipped == [str(bad[2])]
    again = stream.train_batches(0, batch_size=7, seed=0)
    assert same_batches(collect(again), collect(stream.train_batches(0, batch_size=7, seed=0)))
    mem = open_source(settings(root, loader="memory", skip_bad=True, val_fraction=0.0), resolution=24)
    assert mem.split_size("train") == 12 and sorted(mem.describe()["skipped_files"]) == sorted(map(str, bad))


# ---------------------------------------------------------------------------- normalisation
def test_dataset_normalization_is_a_sample_estimate_and_round_trips(folder, monkeypatch):
    src = open_source(settings(folder, normalization="dataset", norm_images=1000), resolution=32)
    norm = src.normalization
    assert norm.kind == "dataset" and norm.images == 18  # capped at the training split
    views = torch.cat(list(src.calibration_batches(18, batch_size=18)))  # every training image, normalised
    pixels = views * torch.tensor(norm.std).view(1, 3, 1, 1) + torch.tensor(norm.mean).view(1, 3, 1, 1)
    assert torch.allclose(pixels.mean((0, 2, 3)), torch.tensor(norm.mean), atol=1e-4)
    assert Normalization.from_dict(norm.to_dict()) == norm
    calls = []
    monkeypatch.setattr(datasets_mod, "decode_image_file", lambda *a, **k: calls.append(a))
    reopened = open_source(settings(folder, normalization="dataset"), resolution=32, normalization=norm)
    assert reopened.normalization == norm and not calls  # a recorded normalisation is reused, not re-estimated
    with pytest.raises(ConfigError):
        Normalization.from_dict({"mean": [0.5], "std": [0.2]})
