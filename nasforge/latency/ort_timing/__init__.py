"""The ORT timing protocol, and the on-device bundle runner (needs only onnxruntime and numpy).

Split by job: `session` (protocol v6: its constants and record, the session, pinning, the input; described
there), `rounds` (the one round loop, for one model or a group), `stats` (a timing's statistics and the
speed reference), `timing` (timing models, bounded retries), `machine` (the machine's fingerprint),
`onnx_null` (a protobuf written by hand: the per-run overhead model), `tablemeta` (the one writer of a
table's metadata, also used by `nasforge profile`) and `runner` (the bundle's command line).

The package travels inside every bundle as a top-level `ort_timing` package (zipimport; the bundle's
`__main__.py` runs `ort_timing.runner.main`): the same protocol times blocks on this machine and on a
Jetson or a Raspberry Pi that has no torch and no nasforge. Hence relative imports only, and nothing
beyond the standard library, numpy and onnxruntime.

Usage on the device:  python bundle.zip --out lut.json [--provider ...]
            (or, extracted: python -m ort_timing bundle.zip --out lut.json)
"""

from .machine import ISA_FLAGS, device_string, machine_info
from .onnx_null import null_model
from .rounds import interleaved_runs, involuntary_switches, run_rounds, timed_runs
from .runner import main, run_bundle, write_json_atomic
from .session import (
    BLOCK_GROUP,
    INTERLEAVED_ROUNDS,
    MAX_UNCERTAINTY,
    PROTOCOL_VERSION,
    PROVIDER_ALIASES,
    RETRIES,
    SUBNET_GROUP,
    SUBNET_MIN_TIMED_MS,
    SWITCH_RUNS,
    make_session,
    pin_threads,
    pinned,
    protocol,
    providers_for,
    raise_priority,
    session_feeds,
    used_provider,
)
from .stats import (
    TimingStats,
    against_reference,
    at_reference_speed,
    median_uncertainty,
    middle_spread,
    reference_speed,
    round_medians,
    summarise,
)
from .tablemeta import LUT_FORMAT, table_metadata, utc_now
from .timing import (
    measure_in_groups,
    time_interleaved,
    time_model,
    time_models,
    time_session,
    time_stable,
    time_stable_many,
)

__all__ = [
    "BLOCK_GROUP", "INTERLEAVED_ROUNDS", "ISA_FLAGS", "LUT_FORMAT", "MAX_UNCERTAINTY", "PROTOCOL_VERSION",
    "PROVIDER_ALIASES", "RETRIES", "SUBNET_GROUP", "SUBNET_MIN_TIMED_MS", "SWITCH_RUNS", "TimingStats",
    "against_reference", "at_reference_speed", "device_string", "interleaved_runs", "involuntary_switches",
    "machine_info", "main", "make_session", "measure_in_groups", "median_uncertainty", "middle_spread", "null_model",
    "pin_threads",
    "pinned", "protocol", "providers_for", "raise_priority", "reference_speed", "round_medians", "run_bundle",
    "run_rounds", "session_feeds", "summarise", "table_metadata", "time_interleaved", "time_model", "time_models",
    "time_session", "time_stable", "time_stable_many", "timed_runs", "used_provider", "utc_now", "write_json_atomic",
]
