"""Data beyond images: a token-sequence source registered only here goes through the consumers unchanged.

The source (token ids + attention masks, synthetic, tiny) names its own metric (`matthews`); it is opened
through `open_source`, run through the conformance suite's batch contract, and measured by `evaluate_archs`
(BN recalibration included) and `accuracy` with a toy model; the numbers are recomputed here by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, matthews_corrcoef
from torch import nn

from nasforge.arch import ArchConfig
from nasforge.data import DATA_SOURCES, DATASETS, DataSettings, DataSource, open_source
from nasforge.data.batch import Batch
from nasforge.data.inputs import TokenInputs, adapt
from nasforge.data.source import Batches, SourceBase, batch_generator
from nasforge.errors import ConfigError
from nasforge.testing.conformance.data_sources import check_batch_contract
from nasforge.train.evaluate import accuracy, evaluate_archs
from nasforge.train.metrics import METRICS, metric

VOCAB, LENGTH, N = 20, 12, 60
SPLITS = {"train": range(0, 30), "val": range(30, 48), "test": range(48, 60)}


class TokenReader:
    """`N` sequences of 3..LENGTH real tokens (id 0 pads); label 1 when token 7 is among the real ones."""

    class_names = ("no-7", "has-7")

    def __init__(self, data_dir: Any = None, *, max_pixels: int = 0) -> None:
        g = torch.Generator().manual_seed(0)
        real = torch.randint(3, LENGTH + 1, (N, 1), generator=g)
        self.mask = (torch.arange(LENGTH)[None, :] < real).to(torch.int64)
        self.ids = torch.randint(1, VOCAB, (N, LENGTH), generator=g) * self.mask
        self.labels = (self.ids == 7).any(1).to(torch.int64)

    def count(self) -> int:
        return N


class TokenSource(SourceBase):
    """Token classification served from memory; what the next issue's text source will look like to consumers."""

    kind = "test-tokens"
    metric = "matthews"
    normalization = None  # no pixels to normalise
    num_classes = 2

    def __init__(self, reader: TokenReader, device: torch.device) -> None:
        self.reader, self.device = reader, device
        self.name, self.class_names, self.resolution, self.selection = "test-tokens", reader.class_names, LENGTH, "test"

    @classmethod
    def open(cls, reader: TokenReader, settings: DataSettings, *, resolution: int, device: torch.device,
             normalization: Any = None, selection: str = "") -> TokenSource:
        return cls(reader, device)

    def _split_len(self, split: str) -> int:
        return len(SPLITS[split])

    def labels(self, split: str, limit: int | None = None) -> torch.Tensor:
        return self.reader.labels[list(SPLITS[split])][:limit]

    def _batch(self, pos: torch.Tensor, resolution: int | None) -> Batch:
        x = TokenInputs(self.reader.ids[pos], self.reader.mask[pos])
        return Batch(x if resolution is None else adapt(x, resolution), self.reader.labels[pos])

    def train_batches(self, epoch: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                      start_step: int = 0, resolution: int | None = None) -> Batches[Batch]:
        spe = self._check_pass(batch_size, rank, world_size, start_step)
        def share(step: int) -> torch.Tensor:
            return self.batch_indices(epoch, step, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)

        items = ((self._batch(share(s), resolution), ()) for s in range(start_step, spe))
        return Batches(items, spe - start_step)

    def eval_batches(self, split: str, *, batch_size: int, resolution: int | None = None,
                     limit: int | None = None) -> Batches[Batch]:
        chunks = torch.tensor(list(SPLITS[split]))[:limit].split(batch_size)
        return Batches(((self._batch(c, resolution), ()) for c in chunks), len(chunks))

    def calibration_batches(self, images: int, *, batch_size: int, resolution: int | None = None,
                            seed: int = 0) -> Batches[TokenInputs]:
        pos = torch.randperm(len(SPLITS["train"]), generator=batch_generator(seed, 3))[:images]
        chunks = pos.split(batch_size)
        return Batches(((self._batch(c, resolution).inputs, ()) for c in chunks), len(chunks))

    def to(self, device: torch.device | str) -> TokenSource:
        return TokenSource(self.reader, torch.device(device))

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.name, "loader": self.kind, "metric": self.metric, "resolution": self.resolution}


class ToyTokenNet(nn.Module):
    """Masked mean of token embeddings -> BatchNorm -> linear; `active(arch)` as a supernet's, lengths recorded.

    Feature 0 counts 7s and alone decides the class, so what a length cuts off changes the predictions.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.emb, self.bn, self.head = nn.Embedding(VOCAB, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)
        with torch.no_grad():
            self.emb.weight.mul_(0.1)[7, 0] = 5.0
            self.head.weight.zero_()[1, 0] = 1.0
            self.head.bias.zero_()
        self.arch: ArchConfig | None = None
        self.lengths: list[tuple[int, int]] = []  # (active arch's resolution, input length) per forward

    @contextmanager
    def active(self, arch: ArchConfig) -> Iterator[None]:
        was, self.arch = self.arch, arch
        try:
            yield
        finally:
            self.arch = was

    def pooled(self, x: TokenInputs) -> torch.Tensor:
        m = x.mask.to(torch.float32)[..., None]
        return (self.emb(x.ids) * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, x: TokenInputs) -> torch.Tensor:
        self.lengths.append((self.arch.resolution if self.arch else -1, x.length))
        return self.head(self.bn(self.pooled(x)))


@pytest.fixture
def tokens() -> Iterator[DataSource]:
    """The token dataset and source, registered for this test only and opened the way a run opens its data."""
    DATASETS.add("test-tokens", TokenReader, summary="test: synthetic token sequences")
    DATA_SOURCES.add("test-tokens", TokenSource, summary="test: token ids + attention masks")
    try:
        yield open_source(DataSettings(dataset="test-tokens", loader="test-tokens"), resolution=LENGTH)
    finally:
        DATASETS._entries.pop("test-tokens")  # the registries have no public removal; leave them as others see them
        DATA_SOURCES._entries.pop("test-tokens")


@torch.no_grad()
def by_hand(net: ToyTokenNet, src: TokenSource, r: int, calib_images: int, calib_batch: int) -> float:
    """Matthews x 100 on val of `net` at sequence length `r` after BN recalibration, without nasforge's code."""
    def cut(ids: torch.Tensor, mask: torch.Tensor) -> TokenInputs:
        pad = max(0, r - ids.shape[1])
        return TokenInputs(nn.functional.pad(ids[:, :r], (0, pad)), nn.functional.pad(mask[:, :r], (0, pad)))

    r_ids, r_mask, labels = src.reader.ids, src.reader.mask, src.reader.labels
    pos = torch.randperm(len(SPLITS["train"]), generator=batch_generator(0, 3))[:calib_images]
    feats = [net.pooled(cut(r_ids[c], r_mask[c])) for c in pos.split(calib_batch)]
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)  # momentum=None: the plain average over batches
    var = torch.stack([f.var(0) for f in feats]).mean(0)
    val = list(SPLITS["val"])
    z = (net.pooled(cut(r_ids[val], r_mask[val])) - mean) / torch.sqrt(var + net.bn.eps)
    pred = net.head(z * net.bn.weight + net.bn.bias).argmax(1)
    return 100.0 * float(matthews_corrcoef(labels[val].numpy(), pred.numpy()))


def test_token_source_keeps_the_batch_contract(tokens):
    assert isinstance(tokens, TokenSource) and tokens.metric == "matthews"
    check_batch_contract(tokens, batch_size=6, resolution=8)
    x, _ = next(iter(tokens.eval_batches("val", batch_size=4, resolution=16)))
    assert x.length == 16 and int(x.mask[:, LENGTH:].sum()) == 0  # padded with masked tokens


def test_token_source_through_evaluate_archs(tokens):
    """evaluate_archs adapts each arch's inputs (crop/pad to its length), recalibrates BN on them and reports
    the source's metric, all without knowing the inputs are tokens."""
    net = ToyTokenNet()
    archs = [ArchConfig(5), ArchConfig(LENGTH), ArchConfig(LENGTH + 4)]
    got = evaluate_archs(net, tokens, archs, "val", calib_images=20, calib_batch_size=8, batch_size=7,
                         amp=False)
    want = [by_hand(net, tokens, a.resolution, 20, 8) for a in archs]
    assert got.tolist() == pytest.approx(want, abs=1e-9)
    assert got[0] != got[1]  # cropping to 5 tokens loses 7s: the arch's length really reached the model
    assert got[1] == got[2]  # padding adds masked tokens only
    assert {(r, n) for r, n in net.lengths} == {(a.resolution, a.resolution) for a in archs}
    assert torch.equal(net.bn.running_mean, torch.zeros(4)) and torch.equal(net.bn.running_var, torch.ones(4))
    # a metric asked for by name instead of the source's
    with net.active(archs[1]):
        top1 = accuracy(net, tokens, "val", LENGTH, batch_size=5, metric="top1", amp=False)
    assert 0 <= top1 <= 100 and top1 != got[1]


REFERENCES = {
    "top1": lambda y, p: 100.0 * float(np.mean(y == p)),
    "f1": lambda y, p: 100.0 * float(f1_score(y, p)),  # binary: F1 of class 1
    "matthews": lambda y, p: 100.0 * float(matthews_corrcoef(y, p)),
}


@pytest.mark.parametrize("name, classes", [("top1", 2), ("top1", 5), ("f1", 2), ("matthews", 2), ("matthews", 3)])
def test_metrics_accumulate_batches_as_reference(name, classes):
    """Every metric summed over uneven batches equals scikit-learn's on the whole split."""
    g = torch.Generator().manual_seed(classes)
    logits, y = torch.randn(50, classes, generator=g), torch.randint(0, classes, (50,), generator=g)
    m = metric(name)
    for lo, hi in ((0, 7), (7, 8), (8, 50)):
        m.update(logits[lo:hi], y[lo:hi])
    want = REFERENCES[name](y.numpy(), logits.argmax(1).numpy())
    assert m.compute() == pytest.approx(want, abs=1e-9) and want != 0


def test_metric_names_and_unknown_metric():
    assert {"top1", "f1", "matthews"} <= set(METRICS.names())
    with pytest.raises(ConfigError, match="unknown metric 'bleu'; expected one of .*top1"):
        metric("bleu")
