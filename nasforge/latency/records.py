"""Typed records for what a latency table's metadata stores about its whole-subnet validation.

A table's `metadata.validation` (or `validation_rejected`) is a `Validation`; its `noise` a `NoiseVerdict`;
each prediction kind's figures a `Scores`. `to_dict()` writes the JSON the tables have always stored (same keys,
same order; a key an older table lacks stays absent) and `from_dict()` reads it back, keeping keys it does not
know under `extra`, so old and shipped tables load and save byte for byte. Readers use these records, never
string keys into the metadata dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from nasforge.errors import LatencyError


def _known(cls: type, data: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the record's own keys, the rest) of `data`; a record must be a JSON object."""
    if not isinstance(data, Mapping):
        raise LatencyError(f"{where}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


@dataclass(frozen=True)
class Scores:
    """How one prediction kind did against the measured subnets: MAPE (%), share within +-10%, Kendall tau."""

    mape: float
    within_10pct: float
    kendall_tau: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mape": self.mape, "within_10pct": self.within_10pct, "kendall_tau": self.kendall_tau, "n": self.n}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "scores") -> Scores:
        own, _ = _known(cls, data, where)
        try:
            return cls(float(own["mape"]), float(own["within_10pct"]), float(own["kendall_tau"]), int(own["n"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LatencyError(f"{where}: not a validation score ({exc})") from None


@dataclass(frozen=True)
class NoiseVerdict:
    """Whether whole-subnet timings were steady enough to calibrate with (`profiler.noise_verdict`)."""

    repeat_n: int
    repeat_median_diff: float | None
    repeat_max_diff: float | None
    unstable_share: float
    preempted_runs: float
    block_drift: float | None
    bounds: dict[str, float]
    trusted: bool
    reason: str | None
    repeat_median_diff_raw: float | None = None  # only when timings were read at a reference speed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if out["repeat_median_diff_raw"] is None:
            del out["repeat_median_diff_raw"]
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "noise") -> NoiseVerdict:
        own, extra = _known(cls, data, where)
        try:
            return cls(**own, extra=extra)
        except TypeError as exc:
            raise LatencyError(f"{where}: not a noise verdict ({exc})") from None


_SCORES = ("raw", "calibrated_cv5", "calibrated_in_sample", "linear_sum_blocks_cv5")


@dataclass(frozen=True)
class Validation:
    """Whole subnets measured on the table's machine: the noise verdict and each prediction kind's scores.

    Tables from before the design points and the noise verdict (format v3) lack most optional fields: they stay
    None and are not written back.
    """

    n: int
    seed: int
    raw: Scores
    calibrated_cv5: Scores | None = None
    n_design: int | None = None
    n_scored: int | None = None
    calibrated_in_sample: Scores | None = None
    linear_sum_blocks_cv5: Scores | None = None
    smallest: dict[str, Any] | None = None
    spread_median: float | None = None
    noise: NoiseVerdict | None = None
    trusted: bool | None = None
    measured_ms_range: list[float] | None = None
    speed_reference: dict[str, Any] | None = None
    seconds: float | None = None  # always written (null when unknown, as for an imported table)
    date: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this record does not know, kept as they were

    ORDER = ("n", "n_design", "n_scored", "seed", *_SCORES, "smallest", "spread_median", "noise", "trusted",
             "measured_ms_range", "speed_reference", "seconds", "date")

    @property
    def headline(self) -> Scores:
        """The figures to quote: calibrated 5-fold CV, or the raw block sum's for a table without them."""
        return self.calibrated_cv5 or self.raw

    @property
    def is_trusted(self) -> bool:
        """Trusted unless the noise verdict said otherwise (tables before the verdict were all trusted)."""
        return self.trusted is not False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.ORDER:
            value = getattr(self, name)
            if value is None and name != "seconds":
                continue
            out[name] = value.to_dict() if isinstance(value, (Scores, NoiseVerdict)) else value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "validation") -> Validation:
        own, extra = _known(cls, data, where)
        for name in _SCORES:
            if own.get(name) is not None:
                own[name] = Scores.from_dict(own[name], f"{where}.{name}")
        if own.get("noise") is not None:
            own["noise"] = NoiseVerdict.from_dict(own["noise"], f"{where}.noise")
        try:
            return cls(**own, extra=extra)
        except TypeError as exc:
            raise LatencyError(f"{where}: not a latency validation ({exc})") from None


@dataclass(frozen=True)
class TopKCheck:
    """One of the search's top-K subnets timed whole on the device, beside what the table and the search said."""

    arch: str  # the arch key
    measured_ms: float
    lut_predicted_ms: float  # the imported table's (calibrated) prediction
    search_predicted_ms: float | None  # what the search predicted when it wrote the bundle
    search_predicted_source: str | None  # "measured" / "estimated" (a roofline guess), None when not recorded


@dataclass(frozen=True)
class ImportReport:
    """What `lut import` learned from a device's table: its validation (None below 5 subnets), the top-K
    subnets' check, and why the provider that ran differs from the one the target asks for (None when it does not)."""

    validation: Validation | None
    topk: list[TopKCheck] = field(default_factory=list)
    provider_warning: str | None = None
