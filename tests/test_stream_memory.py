"""Streaming memory stays flat (issue 22): nothing kept per step or per image, evaluation bounded and lean.

A `train-supernet --loader stream` epoch's peak RSS rose with the folder (1.51 / 1.81 / 2.25 GB for 120 /
1,200 / 3,600 images). Training kept nothing per step; the rise was the end-of-epoch evaluation: its
batches hold min(val split, eval.batch_size) images, it held up to three float copies of one, its CPU
forward's activations grew with the batch, and glibc kept the freed heap. These tests pin each part
without timing anything; BENCHMARKS.md has the command-level numbers.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import tracemalloc
import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import nasforge.heap as heap
import nasforge.train.evaluate as evaluate_mod
from nasforge.data import IMAGENET, open_source
from nasforge.data.source import normalize_uint8
from nasforge.testing.conformance.data_sources import make_folder, settings
from nasforge.testing.train import tiny_train_config
from nasforge.train.callbacks import TrainCallback
from nasforge.train.evaluate import accuracy, eval_batch_size, evaluate_archs
from nasforge.train.trainer import Trainer


def live_tensors() -> tuple[int, int]:
    """(tensor objects, bytes they span) alive in this process; views of one buffer counted once.

    Reads only ints (`data_ptr`, `nbytes`): asking for `untyped_storage()` would create Python objects
    that live as long as the tensors and pollute the tracemalloc reading.
    """
    gc.collect()
    tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    spans = {(t.data_ptr(), t.nbytes) for t in tensors}
    return len(tensors), sum(n for _, n in spans)


class Snapshots(TrainCallback):
    """Python allocations (tracemalloc) and live tensors after two training steps.

    Tracing starts a step before the first snapshot, so objects replaced every step (gradients, the
    current batch) are traced at both snapshots and cancel; only what accumulates remains.
    """

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last, self.seen = first, last, {}

    def on_step_end(self, trainer) -> None:  # type: ignore[no-untyped-def]
        it = trainer.state.iteration
        if it == self.first - 1:
            tracemalloc.start()
        if it in (self.first, self.last):
            gc.collect()  # garbage in reference cycles (autograd's, the step's) is not kept: only what is
            python = tracemalloc.get_traced_memory()[0]  # read before this callback allocates anything else
            self.seen[it] = (python, *live_tensors())
        if it == self.last:
            tracemalloc.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # 3 classes x 40 JPEG/PNG images of 20-80 px: decoded at many sizes, as a real folder is
    return make_folder(tmp_path_factory.mktemp("stream-memory"), train=40, held=2)


# ---------------------------------------------------------------------------- nothing kept per step or image
def test_a_streaming_epoch_keeps_nothing_per_step_or_image(folder, tmp_path):
    """Between step 3 and step 12 (4x the images) of one epoch, no tensor and no Python memory accumulates."""
    cfg = tiny_train_config(**{"epochs": 1, "data.dataset": "imagefolder", "data.data_dir": str(folder),
                               "data.loader": "stream", "data.workers": 0, "data.val_fraction": 0.1,
                               "data.normalization": "imagenet", "data.train_limit": 24, "data.batch_size": 2,
                               "schedule.name": "sandwich", "schedule.random_subnets": 0,
                               "eval.random_subnets": 0})
    snaps = Snapshots(3, 12)
    Trainer(cfg, tmp_path / "run", callbacks=[snaps]).fit()
    (py3, n3, b3), (py12, n12, b12) = snaps.seen[3], snaps.seen[12]
    assert (n12, b12) == (n3, b3), f"step 3: {n3} tensors / {b3} B; step 12: {n12} tensors / {b12} B"
    # Python's freelists and per-shape caches still fill this early (measured: 10-12 KB over steps 3-12, the
    # rate falling from ~800 B/step to ~160 B/step by step 240); a float copy of every 16 px view (3 KB each,
    # 55 KB for 18 images) would exceed the bound, and any tensor kept shows in the counts above.
    assert py12 - py3 < 24 * 1024, f"Python allocations grew {py12 - py3} B from step 3 to 12 (18 images)"


# ---------------------------------------------------------------------------- evaluation: one lean batch at a time
def test_cpu_evaluation_batches_are_capped_and_predictions_do_not_change(folder, monkeypatch):
    """On the CPU `accuracy` asks for at most HOST_EVAL_BYTES of input per batch; every prediction is the same."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [eval_batch_size(cpu, r, 256) for r in (160, 224, 64)] == [54, 27, 256]
    assert eval_batch_size(cuda, 224, 256) == 256 and eval_batch_size(cpu, 4096, 256) == 1
    src = open_source(settings(folder, val_fraction=0.1), resolution=32)
    model = Recorder()
    asked: list[int] = []
    real = src.eval_batches

    def eval_batches(split, *, batch_size, **kw):  # type: ignore[no-untyped-def]
        asked.append(batch_size)
        return real(split, batch_size=batch_size, **kw)

    monkeypatch.setattr(src, "eval_batches", eval_batches)
    whole = accuracy(model, src, "val", 32, batch_size=256)
    whole_preds, model.preds, model.sizes = model.preds, [], []
    monkeypatch.setattr(evaluate_mod, "HOST_EVAL_BYTES", 5 * 3 * 32 * 32 * 4)  # 5 images of 32 px
    capped = accuracy(model, src, "val", 32, batch_size=256)
    assert asked == [256, 5] and model.sizes == [5, 5, 2]
    assert torch.equal(torch.cat(model.preds), torch.cat(whole_preds)) and capped == whole


class Recorder(torch.nn.Module):
    """A fixed random convnet that records its batch sizes and predictions (and can run a check per call)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))
        self.sizes: list[int] = []
        self.preds: list[torch.Tensor] = []
        self.check = lambda x: None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        logits = self.conv(x).mean((2, 3))
        self.sizes.append(int(x.shape[0]))
        self.preds.append(logits.argmax(1))
        return logits


def test_a_streamed_batch_lives_only_as_long_as_its_consumer_holds_it(folder):
    """The source keeps no name on a yielded float batch: dropping it frees it before the next batch is made."""
    src = open_source(settings(folder), resolution=32)
    batches = src.eval_batches("train", batch_size=8)
    x, _ = next(batches)
    ref = weakref.ref(x)
    del x
    assert ref() is None, "the source still holds the batch it yielded"


def test_accuracy_frees_the_source_batch_before_the_forward(folder):
    """With channels_last the forward gets a copy; the normalised original is already gone when it runs."""
    src = open_source(settings(folder), resolution=32)
    refs: list[weakref.ref] = []

    class Spy:  # the source's normalisation, noting (weakly) each batch it makes
        def apply(self, x: torch.Tensor) -> torch.Tensor:
            out = IMAGENET.apply(x)
            refs.append(weakref.ref(out))
            return out

    src.normalization = Spy()  # type: ignore[assignment]
    model = Recorder()
    alive: list[bool] = []
    model.check = lambda x: alive.append(refs[-1]() is not None)
    accuracy(model, src, "val", 32, batch_size=8, channels_last=True)
    assert len(alive) == 4 and not any(alive)  # 30 val images in batches of 8


class NewTensors(TorchDispatchMode):
    """Records every op output that does not share memory with the op's inputs (a fresh allocation)."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[str, torch.dtype, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        inputs = {t.data_ptr() for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.data_ptr() not in inputs:
                self.created.append((str(func), t.dtype, t.numel()))
        return out


def test_normalize_makes_one_float_copy_and_the_same_numbers():
    """uint8 -> standardised float in place: the expression's numbers to the bit, one batch-sized float tensor."""
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    expected = (images.float() / 255.0 - m) / s
    normalize_uint8(images, mean, std)  # builds the cached constants outside the recording
    with NewTensors() as rec:
        out = normalize_uint8(images, mean, std)
    assert torch.equal(out, expected) and out.dtype == torch.float32
    batch_sized = [c for c in rec.created if c[2] == images.numel()]
    assert len(batch_sized) == 1, batch_sized
    cl = normalize_uint8(images.contiguous(memory_format=torch.channels_last), mean, std)
    assert torch.equal(cl, expected) and cl.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------- glibc's retained heap
def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


@pytest.mark.skipif(heap._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_release_free_heap_hands_freed_heap_pages_back():
    """100 MiB freed below a live block stays resident (free() only trims the top); release_free_heap returns it."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 1024  # under glibc's smallest mmap threshold: from the heap
    blocks = [libc.malloc(size) for _ in range(1600)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    top = libc.malloc(size)  # keeps the freed blocks from being the heap's trimmable top
    try:
        for b in blocks:
            libc.free(b)
        before = _rss_kib()
        assert heap.release_free_heap()
        after = _rss_kib()
    finally:
        libc.free(top)
    assert before - after > 50 * 1024, (before, after)


def test_release_free_heap_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    heap._malloc_trim.cache_clear()
    try:
        assert heap._malloc_trim() is None and heap.release_free_heap() is False
    finally:
        monkeypatch.undo()
        heap._malloc_trim.cache_clear()


def test_evaluation_releases_the_heap_around_every_subnet(folder, monkeypatch):
    from nasforge.supernet import build_supernet
    from nasforge.testing import tiny_space

    space = tiny_space()
    net = build_supernet(space)
    src = open_source(settings(folder), resolution=24)
    calls: list[int] = []
    monkeypatch.setattr(evaluate_mod, "release_free_heap", lambda: calls.append(1) or True)
    accs = evaluate_archs(net, src, [space.largest(), space.smallest()], "val", calib_images=8, calib_batch_size=8,
                          limit=8)
    assert len(accs) == 2 and len(calls) == 2 + 2  # before the calibration images, per subnet, after
