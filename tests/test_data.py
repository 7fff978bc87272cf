from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.data import calibration_batches, epoch_order, load_dataset, train_batch
from nasforge.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 24)


def test_digits_shapes_and_splits(digits):
    assert digits.num_classes == 10 and digits.class_names[0] == "0"
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == 1797 // 5
    assert len(digits.val) == round((1797 - 359) * 0.1)
    for split in (digits.train, digits.val, digits.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 24, 24)
        assert split.labels.dtype == torch.int64 and int(split.labels.max()) == 9
    assert int(digits.train.images.max()) == 255  # 0..16 grey levels scaled to 0..255


def test_val_is_disjoint_from_train_and_deterministic(digits):
    train, val = set(digits.train.index.tolist()), set(digits.val.index.tolist())
    assert not train & val
    again = load_dataset("digits", 24)
    assert torch.equal(again.val.index, digits.val.index) and torch.equal(again.val.images, digits.val.images)
    other = load_dataset("digits", 24, split_seed=1)
    assert not torch.equal(other.val.index, digits.val.index)
    limited = load_dataset("digits", 24, train_limit=100, val_fraction=0.2)
    assert len(limited.train) == 100 and not set(limited.train.index.tolist()) & set(limited.val.index.tolist())


def test_train_batches_are_reproducible_and_augmented(digits):
    order = epoch_order(len(digits.train), 3, 0)
    a = train_batch(digits, order, 2, 16, seed=3, epoch=0)
    b = train_batch(digits, order, 2, 16, seed=3, epoch=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = train_batch(digits, order, 3, 16, seed=3, epoch=0)
    assert not torch.equal(a[1], c[1])
    plain = digits.normalize(digits.train.images[order[32:48]])
    assert a[0].shape == (16, 3, 24, 24) and not torch.allclose(a[0], plain)  # cropped/flipped
    assert not torch.equal(epoch_order(len(digits.train), 3, 0), epoch_order(len(digits.train), 3, 1))
    calib = calibration_batches(digits, 100, 40)
    assert [x.shape[0] for x in calib] == [40, 40, 20]


def test_missing_cifar_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", 32, data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist", 32)


def test_imagefolder_is_decoded_once_and_resized(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    data = load_dataset("imagefolder", 16, data_dir=tmp_path, val_fraction=0.0)
    assert data.class_names == ("cat", "dog") and len(data.train) == 6 and len(data.test) == 6
    assert data.train.images.shape == (6, 3, 16, 16)
    with pytest.raises(DataError, match="no val/ or test/"):
        (tmp_path / "only").mkdir()
        (tmp_path / "only" / "train" / "a").mkdir(parents=True)
        load_dataset("imagefolder", 16, data_dir=tmp_path / "only")


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10.py"


@pytest.mark.needs_shared
@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data (CIFAR-10 JPEG pack)")
def test_shared_cifar_subset_as_imagefolder(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cifar10_pack", SHARED)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    from PIL import Image

    d = np.load(mod.PACK)
    classes = [str(c) for c in d["classes"]]
    for split in ("train", "test"):
        jpeg, offs, labels = d[f"{split}_jpeg"], d[f"{split}_offsets"], d[f"{split}_labels"]
        for i in range(40):
            folder = tmp_path / split / classes[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:05d}.jpg").write_bytes(jpeg[offs[i]:offs[i + 1]].tobytes())
    data = load_dataset("imagefolder", 32, data_dir=tmp_path, val_fraction=0.1)
    assert data.train.images.shape[1:] == (3, 32, 32) and len(data.test) == 40
    assert Image is not None


def test_cli_missing_data_dir_exits_2():
    result = CliRunner().invoke(app, ["train-supernet", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar",
                                      "--quiet"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cifar-10-batches-py" in lines[0]
