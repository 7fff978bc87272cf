"""One exception root for the library; the CLI maps every `NasforgeError` to exit code 2."""

from __future__ import annotations


class NasforgeError(Exception):
    """A user-facing error: the message is one readable line."""


class SpaceError(NasforgeError):
    """A search-space YAML is missing, malformed or inconsistent."""


class ArchError(NasforgeError):
    """An architecture is malformed or lies outside its search space."""


class ConfigError(NasforgeError):
    """A run configuration (YAML or flags) is invalid."""


class DataError(NasforgeError):
    """A dataset is missing or unreadable."""


class CheckpointError(NasforgeError):
    """A checkpoint is missing, corrupt or belongs to another space."""


class PredictorError(NasforgeError):
    """An accuracy predictor or measurement store is missing, corrupt or unusable."""


class PredictorMismatchError(PredictorError):
    """A predictor or measurement store was built for another space, supernet or dataset."""


class LatencyError(NasforgeError):
    """A latency target, lookup table or bundle is missing, malformed or does not fit the space."""


class MixedSpeedError(LatencyError):
    """Timings read at a reference speed and raw ones (timed without the reference) were to be combined:
    their ratio is the machine's speed at the time, not the models', so no fit or comparison may mix them."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint belongs to another space: resuming from an older copy would be just as wrong."""


class MissingDependencyError(ConfigError):
    """An optional package a setting needs is not installed (e.g. `tensorboard` for `--tensorboard`)."""
