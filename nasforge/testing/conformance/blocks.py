"""Every registered block kind: its MACs, parameters and shapes are what its static module computes, its table key
names it, and its module exports to ONNX."""

from __future__ import annotations

import math

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
                if math.prod(spec.input_shape) <= 3 * 64 * 64:
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
        x = example_input(spec, 1)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            y = module(x)
        assert counter.get_total_flops() // 2 == layer_macs(spec), spec.key
        assert sum(p.numel() for p in module.parameters()) == layer_params(spec), spec.key
        assert tuple(y.shape) == (1, *spec.output_shape), spec.key


def example_input(spec: LayerSpec, batch: int) -> torch.Tensor:
    """A batch of the block's declared input shape and type (token ids: zeros, a valid id of any vocabulary)."""
    dtype = spec.block.input_dtype(spec)
    if dtype.startswith("float"):
        return torch.randn(batch, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    return torch.zeros(batch, *spec.input_shape, dtype=getattr(torch, dtype))


@pytest.mark.parametrize("kind", BLOCKS.names())
def test_key_names_the_shape_and_differs_between_specs(kind):
    """A table key per distinct block: two specs of a kind with different attributes never share a key."""
    specs = EXAMPLES.get(kind, [])
    assert len({s.key for s in specs}) == len(set(specs))
    for spec in specs:
        assert spec.key.startswith(kind + "_") and all(d > 0 for d in spec.input_shape), spec.key


@pytest.mark.parametrize("kind", BLOCKS.names())
def test_module_exports_to_onnx_and_runs_in_ort(kind):
    from nasforge.latency.backends import export_block
    from nasforge.latency.ort_timing import make_session, session_feeds

    for spec in EXAMPLES.get(kind, [])[:1]:
        session = make_session(export_block(spec))
        out = session.run(None, session_feeds(session))[0]
        assert np.all(np.isfinite(out)), spec.key
