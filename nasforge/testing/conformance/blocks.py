"""Every registered block kind: its MACs and parameter formulas are what its static module computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge.layers import BLOCKS, LayerSpec, build_layer, layer_macs, layer_params
from nasforge.testing.conformance._spaces import example_space, example_spaces


def _examples() -> dict[str, list[LayerSpec]]:
    """A few distinct specs of each kind, from the example spaces' layers at their smallest resolution."""
    out: dict[str, dict[str, LayerSpec]] = {}
    for path in example_spaces():
        space = example_space(path)
        rng = np.random.default_rng(0)
        for arch in [space.largest(min(space.resolutions)), space.smallest(min(space.resolutions)),
                     *space.sample_many(rng, 3)]:
            for spec in space.layers(arch):
                if spec.input_size <= 64:
                    out.setdefault(spec.kind, {}).setdefault(spec.key, spec)
    return {kind: list(specs.values())[:4] for kind, specs in out.items()}


EXAMPLES = _examples()


@pytest.mark.parametrize("kind", BLOCKS.names())
def test_every_block_kind_appears_in_an_example_space(kind):
    assert kind in EXAMPLES, f"block kind {kind!r} is in no example space: its formulas would go untested"


@pytest.mark.parametrize("kind", BLOCKS.names())
def test_formulas_match_the_module(kind):
    from torch.utils.flop_counter import FlopCounterMode

    for spec in EXAMPLES.get(kind, []):
        module = build_layer(spec).eval()
        x = torch.randn(1, spec.in_channels, spec.input_size, spec.input_size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            y = module(x)
        assert counter.get_total_flops() // 2 == layer_macs(spec), spec.key
        assert sum(p.numel() for p in module.parameters()) == layer_params(spec), spec.key
        if y.dim() == 4:
            assert tuple(y.shape) == (1, spec.out_channels, spec.output_size, spec.output_size), spec.key
        else:
            assert tuple(y.shape) == (1, spec.num_classes), spec.key


@pytest.mark.parametrize("kind", BLOCKS.names())
def test_module_exports_to_onnx_and_runs_in_ort(kind):
    from nasforge.latency.backends import export_block
    from nasforge.latency.ort_timing import make_session, session_feeds

    for spec in EXAMPLES.get(kind, [])[:1]:
        session = make_session(export_block(spec))
        out = session.run(None, session_feeds(session))[0]
        assert np.all(np.isfinite(out)), spec.key
