"""What runs, Pareto files, measurement stores and latency tables written before the open core hold still reads
the same: archs' JSON forms and keys, encodings and predictor features, MACs and parameters, the layers of every
arch and the latency-table keys of every space (golden values written by nasforge fe2c155, the commit before)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from nasforge.arch import ArchConfig
from nasforge.latency.enumerate import distinct_layers
from nasforge.space import load_space
from nasforge.testing import TINY_SPACES_DIR

GOLDEN = json.loads((Path(__file__).parent / "data" / "legacy_spaces.json").read_text())


def _space(name: str):  # type: ignore[no-untyped-def]
    return load_space(TINY_SPACES_DIR / f"{name}.yaml" if name.startswith("tiny-") else name)


def _sha(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("name", sorted(GOLDEN["spaces"]))
def test_old_archs_read_encode_and_cost_the_same(name):
    golden = GOLDEN["spaces"][name]
    space = _space(name)
    assert space.fingerprint == golden["fingerprint"]  # every artifact's recorded fingerprint still matches
    assert (str(space.num_subnets(True)), space.num_genes, space.gene_names) == (
        golden["num_subnets"], golden["num_genes"], golden["gene_names"])
    for row in golden["archs"]:
        arch = space.parse_arch(row["arch"])
        assert arch == ArchConfig.from_json(row["json"]) == space.decode(np.array(row["genes"]))
        assert (arch.to_dict(), arch.key, arch.to_json()) == (row["arch"], row["key"], row["json"])
        assert space.encode(arch).tolist() == row["genes"]
        assert np.flatnonzero(space.features([arch])[0]).tolist() == row["features"]
        assert (space.macs(arch), space.params(arch)) == (row["macs"], row["params"])
        assert _sha([spec.key for spec in space.layers(arch)]) == row["layers_sha256"]


@pytest.mark.parametrize("name", sorted(GOLDEN["spaces"]))
def test_old_latency_table_keys_are_the_same(name):
    golden = GOLDEN["spaces"][name]
    keys = sorted(spec.key for spec in distinct_layers(_space(name)))
    assert (len(keys), _sha(keys)) == (golden["distinct_layers_count"], golden["distinct_layers_sha256"])
