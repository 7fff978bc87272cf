"""Run every conformance suite (`nasforge.testing.conformance`) over every registered entry."""

from nasforge.testing.conformance.blocks import *  # noqa: F403
from nasforge.testing.conformance.data_sources import *  # noqa: F403
from nasforge.testing.conformance.engines import *  # noqa: F403
from nasforge.testing.conformance.families import *  # noqa: F403
from nasforge.testing.conformance.predictors import *  # noqa: F403
from nasforge.testing.conformance.schedules import *  # noqa: F403
from nasforge.testing.conformance.timing_backends import *  # noqa: F403
