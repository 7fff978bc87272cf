"""Constraint parsing, the batched evaluator (exact vectorised MACs/params), fail-fast feasibility."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nasforge.errors import ConfigError
from nasforge.search import Evaluator, SearchError, SearchProblem, check_feasible, parse_constraint, parse_objectives
from nasforge.testing import tiny_space
from nasforge.testing.search import SyntheticAccuracy, TableLatency


@pytest.mark.parametrize(
    "text, metric, op, value",
    [
        ("latency<=15ms", "latency", "<=", 15.0),
        ("latency <= 0.02s", "latency", "<=", 20.0),
        ("macs<=300M", "macs", "<=", 300e6),
        ("macs<=1.5g", "macs", "<=", 1.5e9),
        ("params<=5M", "params", "<=", 5e6),
        ("params<=800K", "params", "<=", 800e3),
        ("accuracy>=70", "accuracy", ">=", 70.0),
        ("accuracy>=70%", "accuracy", ">=", 70.0),
    ],
)
def test_parse_constraint(text, metric, op, value):
    c = parse_constraint(text)
    assert (c.metric, c.op) == (metric, op)
    assert c.value == pytest.approx(value)


@pytest.mark.parametrize(
    "text", ["latency<15", "foo<=3", "macs<=3X", "latency<=", "<=3", "latency<=abc", "accuracy=70"]
)
def test_malformed_constraints(text):
    with pytest.raises(ConfigError) as exc:
        parse_constraint(text)
    assert "\n" not in str(exc.value) and text.strip() in str(exc.value)


def test_parse_objectives():
    assert parse_objectives("accuracy, latency") == ("accuracy", "latency")
    for bad in ("", "accuracy,foo", "macs,macs"):
        with pytest.raises(ConfigError):
            parse_objectives(bad)


@pytest.mark.parametrize("name", ["tiny-mbv3", "tiny-resnet"])
def test_evaluator_costs_exact(name):
    space = tiny_space(name)
    ev = Evaluator(space, SyntheticAccuracy(space), TableLatency(space))
    genes = space.sample_genes(np.random.default_rng(3), 300)
    m = ev(genes)
    archs = space.decode_batch(genes)
    assert ev.archs(genes) == archs
    assert [space.macs(a) for a in archs] == m["macs"].astype(int).tolist()
    assert [space.params(a) for a in archs] == m["params"].astype(int).tolist()
    assert np.allclose(m["accuracy"], SyntheticAccuracy(space).predict(space.features(archs)))
    # Costs are additive per block in both families: the vectorised tables are used (and verified).
    assert ev.cost.exact_tables


def test_evaluator_caches_by_canonical_arch():
    space = tiny_space("tiny-mbv3")

    class Counting(SyntheticAccuracy):
        rows = 0

        def predict(self, features):
            Counting.rows += len(features)
            return super().predict(features)

    ev = Evaluator(space, Counting(space))
    genes = space.sample_genes(np.random.default_rng(0), 50)
    ev(genes)
    first = Counting.rows
    mask = space.active_mask(genes)
    other = np.where(mask, genes, (genes + 1) % space.gene_sizes[None, :])  # change only skipped-block genes
    assert not np.array_equal(other, genes)
    ev(other)
    assert Counting.rows == first  # same networks: served from the cache


def test_sign_flip_in_one_adapter():
    space = tiny_space("tiny-mbv3")
    p = SearchProblem(
        space, Evaluator(space, SyntheticAccuracy(space)), ("accuracy", "macs"), (parse_constraint("accuracy>=60"),)
    )
    ev = p.evaluate(space.sample_genes(np.random.default_rng(0), 20))
    assert np.allclose(ev.F[:, 0], -ev.metrics["accuracy"])
    assert np.allclose(ev.F[:, 1], ev.metrics["macs"])
    assert np.array_equal(ev.feasible, ev.metrics["accuracy"] >= 60)


@pytest.mark.parametrize("text", ["macs<=100K", "latency<=0.5ms", "params<=1K"])
def test_infeasible_constraint_fails_fast_with_range(text):
    space = tiny_space("tiny-mbv3")
    p = SearchProblem(
        space,
        Evaluator(space, SyntheticAccuracy(space), TableLatency(space)),
        ("accuracy", "latency"),
        (parse_constraint(text),),
    )
    t0 = time.perf_counter()
    with pytest.raises(SearchError) as exc:
        check_feasible(p)
    assert time.perf_counter() - t0 < 10.0  # a hang guard; the check never runs a search
    msg = str(exc.value)
    assert "infeasible" in msg and "smallest subnet" in msg and "largest subnet" in msg and "\n" not in msg


def test_missing_model_is_a_config_error():
    space = tiny_space("tiny-mbv3")
    with pytest.raises(ConfigError, match="latency"):
        SearchProblem(space, Evaluator(space, SyntheticAccuracy(space)), ("accuracy", "latency"))
