"""Run every conformance suite (`nasforge.testing.conformance`) over every registered entry."""

from nasforge.testing.conformance.blocks import *  # noqa: F403
from nasforge.testing.conformance.data_sources import *  # noqa: F403
from nasforge.testing.conformance.engines import *  # noqa: F403
from nasforge.testing.conformance.families import *  # noqa: F403
from nasforge.testing.conformance.predictors import *  # noqa: F403
from nasforge.testing.conformance.schedules import *  # noqa: F403
from nasforge.testing.conformance.timing_backends import *  # noqa: F403
from nasforge.testing.conformance.train_callbacks import *  # noqa: F403


def test_every_registry_has_a_suite_and_entries():
    """A registry without a suite here would let its entries go untested."""
    import pkgutil

    import nasforge.testing.conformance as conformance
    from nasforge.data import DATA_SOURCES
    from nasforge.families.base import FAMILIES
    from nasforge.latency.registry import TIMING_BACKENDS
    from nasforge.layers import BLOCKS
    from nasforge.predictors.base import PREDICTORS
    from nasforge.search.engines.base import ENGINES
    from nasforge.train.callbacks import TRAIN_CALLBACKS
    from nasforge.train.schedules.base import SCHEDULES

    suites = {m.name for m in pkgutil.iter_modules(conformance.__path__) if not m.name.startswith("_")}
    assert suites == {"blocks", "data_sources", "engines", "families", "predictors", "schedules", "timing_backends",
                      "train_callbacks"}
    for registry in (BLOCKS, DATA_SOURCES, ENGINES, FAMILIES, PREDICTORS, SCHEDULES, TIMING_BACKENDS, TRAIN_CALLBACKS):
        assert registry.names(), registry
