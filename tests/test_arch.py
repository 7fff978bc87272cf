import json

import pytest

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError


def test_equal_values_hash_equal_regardless_of_number_types():
    a = ArchConfig(32, (2, 3), (3, 5, 0, 0), (4, 6, 0, 0))
    b = ArchConfig(32.0, [2, 3], [3.0, 5, 0, 0], [4.0, 6.0, 0.0, 0.0])  # type: ignore[arg-type]
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert len({a, b}) == 1


def test_json_round_trip_keeps_ints_readable():
    a = ArchConfig(224, (2, 4), (3, 7, 0, 0), (3, 6, 0, 0), (0.65, 1.0))
    text = a.to_json()
    assert '"expand_ratios":[3,6,0,0]' in text and '"width_mults":[0.65,1]' in text
    assert ArchConfig.from_json(text) == a
    assert ArchConfig.from_dict(json.loads(text)) == a


def test_frozen():
    a = ArchConfig(32, (2,))
    with pytest.raises(AttributeError):
        a.resolution = 64  # type: ignore[misc]


@pytest.mark.parametrize(
    "payload, message",
    [
        ("[1, 2]", "JSON object"),
        ('{"depths": [2]}', "resolution"),
        ('{"resolution": 32, "depths": "22"}', "must be a list"),
        ('{"resolution": 32, "depths": [2.5]}', "integers"),
        ('{"resolution": 32, "depths": [2], "colour": 1}', "'colour' must be a list"),
        ('{"resolution": 32, "depths": [2], "2x": [1]}', "unknown arch field"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_json_raises_arch_error(payload, message):
    with pytest.raises(ArchError, match=message):
        ArchConfig.from_json(payload)


def test_any_elastic_field_round_trips_and_keys_apart():
    """Fields are open: another family's dimension (attention heads) is held, keyed and written like the rest."""
    a = ArchConfig(32, (2, 1), values={"heads": (4, 2, 0), "mlp_ratios": (3.5, 4, 0)})
    assert a.get("heads") == (4, 2, 0) and a.kernel_sizes == () and set(a.fields) == {"depths", "heads", "mlp_ratios"}
    assert ArchConfig.from_json(a.to_json()) == a and a.to_dict()["mlp_ratios"] == [3.5, 4, 0]
    b = ArchConfig(32, (2, 1), values={"heads": (4, 3, 0), "mlp_ratios": (3.5, 4, 0)})
    assert a != b and a.key != b.key and "heads=4,2,0" in a.key
    assert ArchConfig(32, (2, 1), values={"mlp_ratios": (3.5, 4, 0), "heads": (4, 2, 0)}) == a  # order-free


def test_space_rejects_fields_it_does_not_have():
    from nasforge.testing import tiny_space

    space = tiny_space()
    arch = space.largest()
    bad = ArchConfig(arch.resolution, arch.depths, arch.kernel_sizes, arch.expand_ratios, values={"heads": (1,)})
    with pytest.raises(ArchError, match=r"unknown arch field\(s\) \['heads'\]"):
        space.validate(bad)
