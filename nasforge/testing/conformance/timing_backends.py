"""Every registered timing backend: where it can run it times a block (positive, ordered statistics);
where it cannot, it says why with `BackendUnavailable`, never another exception."""

from __future__ import annotations

import pytest

from nasforge.latency.backends import BackendUnavailable
from nasforge.latency.registry import TIMING_BACKENDS
from nasforge.latency.targets import load_target
from nasforge.testing import tiny_space


@pytest.mark.parametrize("name", TIMING_BACKENDS.names())
def test_backend_times_a_block_or_says_why_not(name):
    backend_cls = TIMING_BACKENDS.get(name)
    target = load_target("gpu" if name != "ort" else "cpu")
    try:
        backend = backend_cls.open(target, 1)
    except BackendUnavailable as exc:
        assert str(exc) and "\n" not in str(exc)
        pytest.skip(f"{name} cannot run here: {exc}")
    space = tiny_space("tiny-mbv3")
    spec = space.layers(space.smallest())[2]
    timing = backend.time_block(spec, warmup=1, repeats=5)
    assert 0 < timing["median_ms"] <= timing["p90_ms"]
    assert backend.provider and backend.device


@pytest.mark.parametrize("name", TIMING_BACKENDS.names())
def test_backend_times_a_group_beside_a_speed_reference(name):
    """`time_blocks(..., reference)` returns one timing per block, in order; a backend that times the reference
    beside the group gives each timing a positive `reference_ms` (and may give a `reference_ratio`)."""
    backend_cls = TIMING_BACKENDS.get(name)
    try:
        backend = backend_cls.open(load_target("gpu" if name != "ort" else "cpu"), 1)
    except BackendUnavailable as exc:
        pytest.skip(f"{name} cannot run here: {exc}")
    space = tiny_space("tiny-mbv3")
    specs = space.layers(space.smallest())[1:4]
    timings = backend.time_blocks(specs, 1, 6, specs[0])
    assert len(timings) == len(specs) and all(t["median_ms"] > 0 for t in timings)
    for t in timings:
        assert t.get("reference_ms") is None or t["reference_ms"] > 0
        assert t.get("reference_ratio") is None or t["reference_ratio"] > 0
    if name == "ort":
        assert all(t["reference_ms"] > 0 and t["reference_ratio"] > 0 for t in timings)
