"""A timing's statistics from its runs, and reading timings at one speed (the speed reference)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TimingStats:
    """One timing's statistics as a table stores them (an entry, a verify row, a validation sample).

    `summarise` fills the first nine; the retry loop adds attempts / stable, a timing beside the speed reference
    reference_ratio / reference_ms. `to_dict()` writes the stored JSON (fields never set stay absent);
    `from_dict()` reads the statistics out of a stored row, leaving what is not a statistic (key, role, arch).
    """

    median_ms: float
    p90_ms: float | None = None
    median_all_ms: float | None = None
    spread: float | None = None
    rounds_spread: float | None = None
    uncertainty: float | None = None
    runs: int | None = None
    clean: int | None = None
    preempted: float | None = None
    reference_ratio: float | None = None
    reference_ms: float | None = None
    attempts: int | None = None
    stable: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> TimingStats:
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})

    def sample(self, digits: int = 5) -> dict[str, Any]:
        """The statistics a validation sample keeps (all but `median_all_ms`), floats rounded to `digits`."""
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in self.to_dict().items()
                if k != "median_all_ms"}


def summarise(
    times: np.ndarray, preempted: np.ndarray | None = None, round_of: np.ndarray | None = None
) -> TimingStats:
    """The protocol's statistic and spread of one timing, from its runs.

    Preempted runs are dropped (all runs are used, and `clean` says so, when fewer than 3 were left
    alone). median_ms / p90_ms: of the clean runs of the quieter half of the rounds (by clean
    median), which sheds windows when a neighbour on the other core slowed the memory system;
    spread: (p90 - p10) / median of those runs; rounds_spread: (p90 - p10) / median of the
    per-round clean medians (how far apart the same timing came out over time); uncertainty: the
    estimated relative standard error (`median_uncertainty` of the round medians, of the runs with
    fewer than 3 rounds);
    preempted: the share of runs a time slice of another process fell into.
    """
    times = np.asarray(times, dtype=np.float64)
    preempted = np.zeros(len(times), bool) if preempted is None else np.asarray(preempted, bool)
    round_of = np.zeros(len(times), np.int64) if round_of is None else np.asarray(round_of)
    ok = ~preempted
    clean = int(ok.sum())
    if clean < 3:
        ok = np.ones(len(times), bool)
    medians = round_medians(times, preempted, round_of)
    if len(medians) >= 2:
        ranked = sorted(medians, key=medians.__getitem__)
        quiet = ranked[: max(1, -(-len(ranked) // 2))]
        use = times[ok & np.isin(round_of, quiet)]
        rounds_spread = middle_spread(np.array(list(medians.values())))
    else:
        use = times[ok]
        rounds_spread = 0.0
    # the statistic's standard error: from the rounds where there are enough, else from the runs themselves
    uncertainty = median_uncertainty(np.array(list(medians.values())) if len(medians) >= 3 else use)
    median = float(np.median(use))
    p10, p90 = (float(v) for v in np.percentile(use, [10, 90]))
    return TimingStats(
        median_ms=median,
        p90_ms=max(p90, median),
        median_all_ms=float(np.median(times)),
        spread=round((p90 - p10) / median, 4),
        rounds_spread=round(rounds_spread, 4),
        uncertainty=round(uncertainty, 4),
        runs=int(len(times)),
        clean=clean,
        preempted=round(float(preempted.mean()), 4) if len(times) else 0.0,
    )



def round_medians(times: np.ndarray, preempted: np.ndarray, round_of: np.ndarray) -> dict[int, float]:
    """Per-round median of the clean runs (of all runs where fewer than 3 were clean)."""
    ok = ~np.asarray(preempted, bool)
    if ok.sum() < 3:
        ok = np.ones(len(times), bool)
    out = {}
    for r in np.unique(round_of):
        sel = ok & (round_of == r)
        if sel.any():
            out[int(r)] = float(np.median(times[sel]))
    return out


def against_reference(model: dict[int, float], reference: dict[int, float]) -> dict[str, Any]:
    """A model's ratio to the reference timed in the same rounds: the median over rounds of (its round median /
    the reference's), and how far those ratios lay apart (`rounds_spread`, replacing the plain one: the
    machine's speed, which moves both alike, no longer counts as unsteadiness)."""
    common = sorted(set(model) & set(reference))
    if not common:
        return {}
    ratios = np.array([model[r] / reference[r] for r in common])
    return {
        "reference_ratio": float(np.median(ratios)),
        "rounds_spread": round(middle_spread(ratios), 4),
        "uncertainty": round(median_uncertainty(ratios), 4),
    }


def median_uncertainty(values: np.ndarray) -> float:
    """The relative standard error of the median of `values`: 1.2533 x sigma / sqrt(n) / median, sigma from the
    MAD (1.4826 x MAD: robust to the odd slow round); 0 for fewer than 2 values."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return 0.0
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    return 1.2533 * sigma / np.sqrt(len(values)) / median if median > 0 else 0.0


def middle_spread(values: np.ndarray) -> float:
    """(p90 - p10) / median of per-round values: how far the middle 80% of rounds lay apart (0 for one round)."""
    if len(values) < 2:
        return 0.0
    p10, p90 = np.percentile(values, [10, 90])
    return float((p90 - p10) / np.median(values))



def reference_speed(timings: Any) -> float | None:
    """The reference speed of a set of timings: the median `reference_ms` of their groups (None without any)."""
    refs = [float(t["reference_ms"]) for t in timings if isinstance(t, dict) and t.get("reference_ms")]
    return float(np.median(refs)) if refs else None


def at_reference_speed(timing: dict[str, Any], speed_ms: float | None) -> float:
    """A timing's median read at the reference speed `speed_ms`: median_ms x speed_ms / its group's reference_ms.

    A machine's speed wanders as a whole (a neighbour's memory traffic, the host's frequency), which
    moves every model timed in the same seconds alike; the ratio to a reference timed beside it does
    not move with it. Without a reference (older tables, backends that time models alone): the median.
    """
    ref = timing.get("reference_ms")
    if not speed_ms or not ref:
        return float(timing["median_ms"])
    ratio = timing.get("reference_ratio")
    if ratio:  # measured round by round beside the reference: the steadier form
        return float(ratio) * float(speed_ms)
    return float(timing["median_ms"]) * float(speed_ms) / float(ref)


