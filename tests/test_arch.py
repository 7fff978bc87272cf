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
        ('{"resolution": 32, "depths": [2], "colour": 1}', "unknown arch field"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_json_raises_arch_error(payload, message):
    with pytest.raises(ArchError, match=message):
        ArchConfig.from_json(payload)
