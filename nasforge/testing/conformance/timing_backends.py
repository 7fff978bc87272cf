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
