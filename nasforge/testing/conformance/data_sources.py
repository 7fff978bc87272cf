"""Every registered data source and input kind: one contract each.

Sources: sizes, labels from the shared plan, resume, rank shares, eval, and the batch contract
(`check_batch_contract`: typed `Batch`es of a registered input kind, adaptable to any arch, sharded
as `Batch.shard`, a registered metric), which any source of any input kind can be run through.
Input kinds: size, slicing, adapting and moving agree for the kind's own example inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nasforge.data import DATA_SOURCES, DATASETS, DataSettings, DataSource, open_source
from nasforge.data.batch import Batch
from nasforge.data.inputs import INPUT_KINDS, adapt, kind_of, same_inputs, shard, take, to_device
from nasforge.data.inputs import batch_size as size_of
from nasforge.errors import ConfigError, DataError
from nasforge.train.metrics import METRICS

CLASSES = ("cat", "dog", "fox")


def make_folder(root: Path, *, train: int = 8, held: int = 3, size: tuple[int, int] = (20, 80), seed: int = 0,
                fixed: int | None = None) -> Path:
    """DIR/train/<class>/*, DIR/val/<class>/*: alternating JPEG and PNG, random sizes (or all `fixed` px, PNG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", held)):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = (fixed, fixed) if fixed else rng.integers(size[0], size[1] + 1, 2)
                base = np.zeros((h, w, 3), dtype=np.float64)
                base[..., c] = 160  # a class colour, so a model has something to see
                arr = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                suffix = "png" if fixed or i % 2 else "jpg"
                Image.fromarray(arr).save(root / split / cls / f"{i:03d}.{suffix}")
    return root


def settings(root: Path, **kw) -> DataSettings:  # type: ignore[no-untyped-def]
    base = {"dataset": "imagefolder", "data_dir": str(root), "loader": "stream", "workers": 0, "val_fraction": 0.25,
            "normalization": "imagenet"}
    return DataSettings(**{**base, **kw})


def collect(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[no-untyped-def]
    return [(x.clone(), y.clone()) for x, y in batches]


def same_batches(a, b) -> bool:  # type: ignore[no-untyped-def]
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_folder(tmp_path_factory.mktemp("folder"))


@pytest.mark.parametrize("loader", DATA_SOURCES.names())
def test_source_contract(loader, folder):
    """What every registered source must do: sizes, labels per the shared plan, resume, rank shares."""
    src = open_source(settings(folder, loader=loader), resolution=32)
    assert isinstance(src, DataSource)
    assert src.kind == loader and src.class_names == CLASSES and src.num_classes == 3
    assert (src.split_size("train"), src.split_size("val"), src.split_size("test")) == (18, 6, 9)
    assert src.steps_per_epoch(6) == 3 and src.steps_per_epoch(64) == 1
    train_labels = src.labels("train")

    full = collect(src.train_batches(1, batch_size=6, seed=7))
    assert len(full) == 3
    for step, (x, y) in enumerate(full):
        assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(y, train_labels[src.batch_indices(1, step, batch_size=6, seed=7)])
    # resume: from any step the rest of the epoch replays exactly
    assert same_batches(collect(src.train_batches(1, batch_size=6, seed=7, start_step=2)), full[2:])
    assert not same_batches(collect(src.train_batches(2, batch_size=6, seed=7)), full)
    # two ranks: disjoint shares that together cover every global batch once, and equal its [rank::2] slice
    seen = []
    for rank in (0, 1):
        share = collect(src.train_batches(1, batch_size=6, seed=7, rank=rank, world_size=2))
        for step, ((x, y), (gx, gy)) in enumerate(zip(share, full)):
            assert torch.equal(x, gx[rank::2]) and torch.equal(y, gy[rank::2])
            seen += src.batch_indices(1, step, batch_size=6, seed=7, rank=rank, world_size=2).tolist()
    assert sorted(seen) == list(range(18))
    with pytest.raises(ConfigError):
        src.train_batches(0, batch_size=6, seed=0, rank=2, world_size=2)

    evals = collect(src.eval_batches("test", batch_size=4))
    assert [x.shape[0] for x, _ in evals] == [4, 4, 1]
    assert torch.equal(torch.cat([y for _, y in evals]), src.labels("test"))
    assert [x.shape[-1] for x, _ in src.eval_batches("val", batch_size=4, resolution=24, limit=5)] == [24, 24]
    calib = [x.shape for x in src.calibration_batches(10, batch_size=4, resolution=16)]
    assert calib == [(4, 3, 16, 16), (4, 3, 16, 16), (2, 3, 16, 16)]
    record = src.describe()
    assert record["loader"] == loader and record["normalization"]["kind"] == "imagenet"
    check_batch_contract(src, batch_size=6, resolution=24)


def check_batch_contract(src: DataSource, *, batch_size: int, resolution: int) -> None:
    """What every source's batches are, whatever their inputs; call it on any source (a test's own included)."""
    assert src.metric in METRICS and src.describe()["metric"] == src.metric
    train_labels = src.labels("train")
    full = list(src.train_batches(0, batch_size=batch_size, seed=3))
    shares = [list(src.train_batches(0, batch_size=batch_size, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    for step, b in enumerate(full):
        _check_batch(b, batch_size, resolution)
        assert torch.equal(b.targets, train_labels[src.batch_indices(0, step, batch_size=batch_size, seed=3)])
        for rank in (0, 1):  # a rank's share is `Batch.shard` of the global batch
            share, want = shares[rank][step], b.shard(rank, 2)
            assert same_inputs(share.inputs, want.inputs) and torch.equal(share.targets, want.targets)
    evals = list(src.eval_batches("val", batch_size=batch_size))
    assert sum(b.size for b in evals) == src.split_size("val")
    assert torch.equal(torch.cat([b.targets for b in evals]), src.labels("val"))
    for x in src.calibration_batches(batch_size + 1, batch_size=batch_size):
        assert 0 < size_of(x) <= batch_size and kind_of(x) is kind_of(full[0].inputs)


def _check_batch(b: Batch, size: int, resolution: int) -> None:
    assert isinstance(b, Batch)
    x, y = b  # unpacking keeps working
    assert b.size == size == int(y.shape[0]) and y.dtype == torch.int64
    adapted = adapt(x, resolution)
    assert size_of(adapted) == size and same_inputs(adapt(adapted, resolution), adapted)
    moved = b.to("cpu")
    assert same_inputs(moved.inputs, to_device(x, "cpu")) and torch.equal(moved.targets, y.cpu())


@pytest.mark.parametrize("name", INPUT_KINDS.names())
def test_input_kind_contract(name):
    """Every registered input kind: size, slices, shards, adapting and moving agree on its example inputs."""
    kind = INPUT_KINDS.get(name)()
    x = kind.example(6, 5, torch.Generator().manual_seed(0))
    assert type(kind_of(x)) is type(kind) and size_of(x) == 6
    for index in (slice(1, 4), torch.tensor([5, 0, 2])):
        part = take(x, index)
        assert size_of(part) == 3
        assert all(torch.equal(p, t[index]) for p, t in zip(kind.tensors(part), kind.tensors(x), strict=True))
    halves = [shard(x, r, 2) for r in (0, 1)]
    assert [size_of(h) for h in halves] == [3, 3] and same_inputs(halves[1], take(x, slice(1, None, 2)))
    for r in (3, 5, 9):  # smaller, equal and larger than the example's own size
        a = adapt(x, r)
        assert size_of(a) == 6 and same_inputs(adapt(a, r), a) and not same_inputs(a, adapt(x, r + 1))
    assert same_inputs(to_device(x, "cpu"), x)
    batch = Batch(x, torch.arange(6))
    assert same_inputs(batch.shard(1, 2).inputs, halves[1]) and batch.shard(0, 1) is batch


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_dataset_without_its_files_is_one_line(dataset, tmp_path):
    """A reader either needs no folder (bundled data) or refuses a missing one with one DataError line."""
    try:
        DATASETS.get(dataset)(str(tmp_path / "missing"), max_pixels=10**8).count()
    except DataError as exc:
        assert "\n" not in str(exc) and str(exc)
