"""Building lookup tables on the machine at hand: time every distinct block, then calibrate on whole subnets.

The timing protocol itself lives in the torch-free `nasforge.latency.ort_timing` (shared with the
on-device runner). This module adds what needs torch (ONNX export of blocks and subnets, the
PyTorch-CUDA fallback timer), measurement hygiene (every timing carries its spread; unstable
ones are measured again, within bounds), the choice of whole subnets to calibrate on, the noise
verdict and the calibration fit. `profile` is the one entry point (`nasforge profile`, the quickstart).
A table's metadata is written by `ort_timing.table_metadata`, the same function the bundle's runner calls on a
board, so tables built either way say the same things in the same words.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import LatencyError
from nasforge.latency import calibration as cal
from nasforge.latency import ort_timing
from nasforge.latency.backends import (  # noqa: F401  (re-exported: the profiler's ONNX export helpers)
    block_input_shape,
    export_block,
    export_module,
    export_subnet,
    open_backend,
)
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import (
    LatencyTable,
    at_one_speed,
    machine_differences,
    table_filename,
    this_machine,
    user_tables_dir,
)
from nasforge.latency.model import TableFeatures
from nasforge.latency.records import NoiseVerdict, Scores, Validation
from nasforge.latency.reference import reference_block, reference_subnet
from nasforge.latency.targets import Target
from nasforge.layers import LayerSpec
from nasforge.space import SearchSpace

Progress = Callable[[int, int], None]  # (done, total): the caller draws
DEFAULT_VALIDATE = 40  # whole subnets measured when a table has no trusted calibration yet
# the noise verdict: the same subnet measured twice, minutes apart, must agree this well. Two timings with
# independent Gaussian noise sigma differ by about sigma in the median (0.954 sigma), and sigma <= 5.1% keeps 95% of
# timings within +-10% of the truth from noise alone: a larger median difference leaves no room for the +-10% aim
REPEAT_MEDIAN = 0.05
REPEAT_MAX = 0.10
REPEAT_MIN_SUBNETS = 5  # subnets measured twice: at least this many, or an eighth of the validation
UNSTABLE_SHARE = 0.25  # at most this share of whole-subnet timings may miss the uncertainty bound after retries
DRIFT_BLOCKS = 16  # blocks timed again after the whole subnets: is the table still this machine's state?
DRIFT_MAX = 0.05  # ... their medians may have moved this much (median over the 16)


class Timer:
    """Times blocks and subnets for one target with the protocol, through the first backend that runs here.

    Every timing is measured again while its estimated relative standard error exceeds `max_uncertainty`, at most
    `retries` more times (`ort_timing.time_stable`); `stats` counts how often that happened.
    `with timer.pinned():` pins this process to `threads` cores and asks for a higher priority for the
    measurements (the protocol), and gives the process its affinity and niceness back afterwards.
    """

    def __init__(
        self,
        target: Target,
        threads: int | None = None,
        warmup: int = 10,
        repeats: int = 50,
        *,
        pin: bool = True,
        max_uncertainty: float = ort_timing.MAX_UNCERTAINTY,
        retries: int = ort_timing.RETRIES,
    ) -> None:
        """pin: whether `pinned()` pins at all (tests pass False)."""
        self.target = target
        self.threads = int(threads or target.threads)
        if self.threads < 1:
            raise LatencyError(f"--threads must be a positive integer, got {self.threads}")
        if retries < 0 or max_uncertainty <= 0:
            raise LatencyError("retries must be >= 0 and max_uncertainty > 0")
        self.warmup, self.repeats = warmup, repeats
        self.max_uncertainty, self.retries = max_uncertainty, retries
        self.pin = pin
        self.impl = open_backend(target, self.threads)
        self.backend, self.provider, self.device = self.impl.name, self.impl.provider, self.impl.device
        self.cores: list[int] | None = None
        self.nice: int | None = None
        self.stats = {"timings": 0, "retried": 0, "unstable": 0}

    @contextmanager
    def pinned(self) -> Iterator[None]:
        if not self.pin or self.backend != "ort":
            yield
            return
        with ort_timing.pinned(self.threads) as (cores, nice):
            self.cores, self.nice = cores, nice
            yield

    def metadata(self, space: SearchSpace) -> dict[str, Any]:
        """A fresh table's metadata (`ort_timing.table_metadata`: the same writer as the bundle's runner)."""
        return ort_timing.table_metadata(
            target=self.target.name, space=space.name, space_fingerprint=space.fingerprint, batch=self.target.batch,
            device=self.device, machine=this_machine(), provider=self.provider, threads=self.threads,
            warmup=self.warmup, repeats=self.repeats, cores=self.cores, nice=self.nice, backend=self.backend,
            max_uncertainty=self.max_uncertainty, retries=self.retries,
        )

    def stable(self, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        timing = ort_timing.time_stable(measure, self.max_uncertainty, self.retries)
        self.stats["timings"] += 1
        self.stats["retried"] += int(timing["attempts"] > 1)
        self.stats["unstable"] += int(not timing["stable"])
        return timing

    def stable_many(self, measure: Callable[[list[int]], list[dict[str, Any]]], n: int) -> list[dict[str, Any]]:
        timings = ort_timing.time_stable_many(measure, n, self.max_uncertainty, self.retries)
        for timing in timings:
            self.stats["timings"] += 1
            self.stats["retried"] += int(timing["attempts"] > 1)
            self.stats["unstable"] += int(not timing["stable"])
        return timings

    def block(self, spec: LayerSpec) -> dict[str, Any]:
        return self.stable(lambda: self.impl.time_block(spec, self.warmup, self.repeats))

    def subnet(self, space: SearchSpace, arch: ArchConfig) -> dict[str, Any]:
        return self.stable(lambda: self.impl.time_subnet(space, arch, self.warmup, self.repeats))

    def blocks(self, specs: list[LayerSpec], reference: LayerSpec | None = None) -> list[dict[str, Any]]:
        """Several blocks timed interleaved (one group, beside the speed `reference` if given), each re-measured
        while unsteady (bounded)."""
        return self.stable_many(
            lambda idx: self.impl.time_blocks([specs[i] for i in idx], self.warmup, self.repeats, reference),
            len(specs),
        )

    def subnets(
        self, space: SearchSpace, archs: list[ArchConfig], reference: ArchConfig | None = None
    ) -> list[dict[str, Any]]:
        """Several whole subnets timed interleaved (one group, beside the speed `reference` if given), each
        re-measured while unsteady (bounded)."""
        return self.stable_many(
            lambda idx: self.impl.time_subnets(space, [archs[i] for i in idx], self.warmup, self.repeats, reference),
            len(archs),
        )

    def overhead(self) -> float:
        """The fixed per-run cost in ms (what every isolated block timing carries once)."""
        return float(self.stable(lambda: self.impl.time_overhead(self.warmup, self.repeats * 4))["median_ms"])


def default_table_path(target: Target, space: SearchSpace) -> Path:
    """Where `nasforge profile` writes by default: the user folder, one file per target x space x machine."""
    return user_tables_dir() / table_filename(target.name, space.name, this_machine() if target.local else None)


def open_table(out: Path, space: SearchSpace, timer: Timer) -> LatencyTable:
    """The LUT at `out` to resume (checked against space, target, provider and machine), or a fresh one."""
    meta = timer.metadata(space)
    if out.exists():
        table = LatencyTable.load(out)
        old = table.metadata
        for field in ("space_fingerprint", "target", "provider", "threads", "batch", "protocol"):
            if old.get(field) != meta[field]:
                raise LatencyError(
                    f"{out} was measured with {field}={old.get(field)!r}, this run has {meta[field]!r}; "
                    f"pass another --out or delete the file"
                )
        diffs = machine_differences(table.machine)
        if diffs:
            raise LatencyError(
                f"{out} was measured on {table.machine.get('cpu')!r}, this machine is {this_machine().get('cpu')!r} "
                f"({', '.join(diffs)} differ or unknown); a table holds one machine's timings: pass another --out"
            )
        for keep in (
            "build_seconds",
            "run_overhead_ms",
            "stability",
            "speed_reference",
            "validation",
            "calibration",
            "validation_rejected",
            "note",
            "validation_samples",
            "validation_under_load",
            "earlier_runs",
        ):
            if keep in old:
                meta[keep] = old[keep]
        table.metadata = meta
        return table
    return LatencyTable(meta, {}, [], str(out))


def _stability(entries: dict[str, dict[str, Any]], timer: Timer) -> dict[str, Any]:
    spreads = np.array([e.get("rounds_spread", 0.0) for e in entries.values()] or [0.0])
    uncertainty = np.array([e.get("uncertainty", 0.0) for e in entries.values()] or [0.0])
    return {
        "max_uncertainty": timer.max_uncertainty,
        "retries": timer.retries,
        "blocks_retried": sum(int(e.get("attempts", 1) > 1) for e in entries.values()),
        "blocks_unstable": sum(int(not e.get("stable", True)) for e in entries.values()),
        "rounds_spread_median": round(float(np.median(spreads)), 4),
        "rounds_spread_p90": round(float(np.percentile(spreads, 90)), 4),
        "uncertainty_median": round(float(np.median(uncertainty)), 4),
        "uncertainty_p90": round(float(np.percentile(uncertainty, 90)), 4),
        "preempted_runs": round(float(np.mean([e.get("preempted", 0.0) for e in entries.values()] or [0.0])), 4),
    }


def table_lock(out: str | Path) -> AbstractContextManager[None]:
    """Held while one profile times and writes the table `out`: a second one on the same file fails at once
    (one line) instead of timing everything again and overwriting the first one's table."""
    from nasforge.io import exclusive_lock

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_name(f".{out.name}.lock")
    return exclusive_lock(lock, LatencyError(
        f"{out}: another `nasforge profile` is writing this table (it holds {lock.name}); "
        "wait for it to finish or give another --out"))


def build_table(
    space: SearchSpace,
    timer: Timer,
    out: str | Path,
    *,
    on_progress: Progress | None = None,
    note: str | None = None,
    save_every_s: float = 10.0,
) -> LatencyTable:
    """Measure every distinct block of `space` not yet in `out`; rewrite `out` atomically as it goes."""
    out = Path(out)
    table = open_table(out, space, timer)
    if note:
        table.metadata["note"] = note
    specs = distinct_layers(space)
    todo = [s for s in specs if s.key not in table.entries]
    reference = reference_block(space)
    start = time.perf_counter()
    base = float(table.metadata.get("build_seconds", 0.0))

    def record(spec: LayerSpec, timing: dict[str, Any]) -> None:
        table.entries[spec.key] = _rounded(timing)

    def save(done: int, total: int) -> None:
        table.metadata["build_seconds"] = round(base + time.perf_counter() - start, 1)
        table.save(out)

    with timer.pinned():
        table.metadata.update(cores=timer.cores, nice=timer.nice)
        if "run_overhead_ms" not in table.metadata:
            table.metadata["run_overhead_ms"] = round(timer.overhead(), 6)
        ort_timing.measure_in_groups(
            todo, lambda group: timer.blocks(group, reference), record, save,
            save_every_s=save_every_s, on_progress=on_progress,
        )
    table.metadata["build_seconds"] = round(base + time.perf_counter() - start, 1)
    table.metadata["date"] = ort_timing.utc_now()
    table.metadata["entries"] = len(table.entries)
    table.metadata["stability"] = _stability(table.entries, timer)
    table.metadata["speed_reference"] = {
        **(table.metadata.get("speed_reference") or {}),
        "block": reference.key,
        "block_ms": ort_timing.reference_speed(table.entries.values()),
        "block_range": _reference_range(table.entries.values()),
    }
    table.check_one_speed()
    table.save(out)
    return table


def _reference_range(timings: Any) -> float | None:
    """(max - min) / median of the reference's per-group medians: how far the machine's speed moved."""
    refs = np.array(sorted({float(t["reference_ms"]) for t in timings if t.get("reference_ms")}))
    return round(float(np.ptp(refs) / np.median(refs)), 4) if len(refs) else None


def _rounded(timing: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in timing.items()}


# ---------------------------------------------------------------------------- whole subnets
def choose_subnets(
    space: SearchSpace,
    features: Callable[[list[ArchConfig]], dict[str, np.ndarray]],
    n: int,
    rng: np.random.Generator,
    pool: int = 2000,
) -> tuple[list[ArchConfig], np.ndarray]:
    """`n` distinct subnets to measure whole, and which of them are design points.

    A quarter (at least 2) are design points: the smallest and largest subnet, then, greedily, the
    candidate of a random pool farthest (standardised sum_ms, weight_mb, act_mb) from those chosen,
    so the calibration sees the edges of the space that random sampling rarely reaches (the smallest
    net was predicted 45% low before). The rest are random: they are what the validation scores.
    """
    if n <= 0:
        return [], np.zeros(0, bool)
    n_design = 0 if n < 4 else max(2, n // 4)
    design: list[ArchConfig] = []
    if n_design:
        candidates = list(dict.fromkeys([space.smallest(), space.largest(), *space.sample_many(rng, pool)]))
        f = features(candidates)
        x = np.stack([f["sum_ms"], f["weight_mb"], f["act_mb"]], axis=1)
        x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
        chosen = [0, 1]
        dist = np.minimum(np.linalg.norm(x - x[0], axis=1), np.linalg.norm(x - x[1], axis=1))
        while len(chosen) < n_design:
            nxt = int(np.argmax(dist))
            chosen.append(nxt)
            dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        design = [candidates[i] for i in chosen]
    taken = set(design)
    random_archs: list[ArchConfig] = []
    for _ in range(20):  # distinct random subnets (a tiny space may not have n of them)
        for arch in space.sample_many(rng, n):
            if arch not in taken and len(random_archs) < n - len(design):
                taken.add(arch)
                random_archs.append(arch)
        if len(random_archs) >= n - len(design):
            break
    archs = design + random_archs
    return archs, np.array([True] * len(design) + [False] * len(random_archs))


def repeat_count(n_random: int, n: int) -> int:
    """How many of a validation's random subnets are measured a second time, at its end (the noise verdict)."""
    return min(n_random, max(REPEAT_MIN_SUBNETS, n // 8))


def noise_verdict(
    first: np.ndarray, again: np.ndarray, timings: list[dict[str, Any]], block_drift: float | None = None
) -> NoiseVerdict:
    """Whether whole-subnet timings on this machine are steady enough to validate and calibrate with.

    first / again: the same subnets measured twice (at the start and at the end of the validation).
    Too noisy when they disagree by more than 5% in the median (see REPEAT_MEDIAN) or 10% at worst
    (a +-10% claim cannot rest on a timing that moves 10% by itself), when over a quarter of the timings
    stayed unstable after their retries, or when blocks timed again now differ from the table by
    more than 5% (median): the machine is no longer in the state the blocks were measured in, and a
    calibration would fit that difference.
    """
    first, again = np.asarray(first, float), np.asarray(again, float)
    diff = np.abs(again / first - 1) if len(first) else np.zeros(0)
    unstable = float(np.mean([not t.get("stable", True) for t in timings])) if timings else 0.0
    reasons = []
    if len(diff) and np.median(diff) > REPEAT_MEDIAN:
        reasons.append(f"the same subnets measured twice differ by {np.median(diff):.1%} in the median")
    if len(diff) and diff.max() > REPEAT_MAX:
        reasons.append(f"up to {diff.max():.0%}")
    if unstable > UNSTABLE_SHARE:
        reasons.append(f"{unstable:.0%} of whole-subnet timings stayed unstable after retries")
    if block_drift is not None and block_drift > DRIFT_MAX:
        reasons.append(f"blocks timed again differ from the table by {block_drift:.1%} (median)")
    return NoiseVerdict(
        repeat_n=int(len(diff)),
        repeat_median_diff=round(float(np.median(diff)), 4) if len(diff) else None,
        repeat_max_diff=round(float(diff.max()), 4) if len(diff) else None,
        unstable_share=round(unstable, 4),
        preempted_runs=round(float(np.mean([t.get("preempted", 0.0) for t in timings] or [0.0])), 4),
        block_drift=None if block_drift is None else round(float(block_drift), 4),
        bounds={"repeat_median": REPEAT_MEDIAN, "repeat_max": REPEAT_MAX, "unstable_share": UNSTABLE_SHARE,
                "block_drift": DRIFT_MAX},
        trusted=not reasons,
        reason="; ".join(reasons) if reasons else None,
    )


def validate_table(
    space: SearchSpace,
    table: LatencyTable,
    timer: Timer,
    n: int,
    *,
    seed: int = 0,
    on_progress: Progress | None = None,
    measure: Callable[[ArchConfig], dict[str, Any]] | None = None,
) -> Validation:
    """Measure `n` whole subnets, check the machine was steady, fit and score the calibration.

    Subnets: design points plus random ones (`choose_subnets`), timed interleaved in groups; at the
    end a tenth of the random ones (at least 3) is measured again for the noise verdict. Reports raw (plain block sum)
    figures, calibrated figures in 5-fold cross-validation over the random subnets (each predicted
    by a calibration fitted without it; design points always train), in-sample ones, and the old
    linear calibration's CV for comparison. Only a trusted run is stored as the table's validation
    and calibration; an untrusted one is kept as `validation_rejected` and the old calibration stays.
    """
    if n < 1:
        raise LatencyError("--validate needs at least 1 subnet")
    rng = np.random.default_rng(seed)
    archs, designed = choose_subnets(space, TableFeatures(table, space), n, rng)
    reference = None if measure is not None else reference_subnet(space)
    if measure is not None:
        one_by_one = measure

        def measure_many(group: list[ArchConfig]) -> list[dict[str, Any]]:
            return [one_by_one(a) for a in group]
    else:

        def measure_many(group: list[ArchConfig]) -> list[dict[str, Any]]:
            return timer.subnets(space, group, reference)

    randoms = np.flatnonzero(~designed)
    again_idx = randoms[: repeat_count(len(randoms), len(archs))]
    total = len(archs) + len(again_idx)
    timings: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    start = time.perf_counter()
    step = ort_timing.SUBNET_GROUP
    with timer.pinned():
        for g in range(0, len(archs), step):
            timings += measure_many(archs[g : g + step])
            if on_progress is not None:
                on_progress(len(timings), total)
        # the same subnets once more, last: does this machine give the same number twice?
        for g in range(0, len(again_idx), step):
            again += measure_many([archs[i] for i in again_idx[g : g + step]])
            if on_progress is not None:
                on_progress(len(archs) + len(again), total)
        drift = None if measure is not None else measure_block_drift(space, table, timer, rng)
    result = assess_validation(
        space, table, archs, designed, timings, again_idx, again, seed=seed, seconds=time.perf_counter() - start,
        block_drift=drift, reference=None if reference is None else reference.key,
    )
    if table.path:
        table.save(table.path)
    return result


def measure_block_drift(space: SearchSpace, table: LatencyTable, timer: Timer, rng: np.random.Generator) -> float:
    """Median relative change of `DRIFT_BLOCKS` random blocks timed again now against the table (both read at
    the table's reference speed when it has one)."""
    specs = [s for s in distinct_layers(space) if s.key in table.entries]
    pick = sorted(rng.choice(len(specs), min(DRIFT_BLOCKS, len(specs)), replace=False))
    group = [specs[i] for i in pick]
    speed = table.block_speed_ms
    timings = timer.blocks(group, reference_block(space) if speed else None)
    now = at_one_speed(timings, speed, "blocks timed again for the drift check")
    then = np.array([table.ms(s.key) for s in group])
    return float(np.median(np.abs(now / then - 1)))


def assess_validation(
    space: SearchSpace,
    table: LatencyTable,
    archs: list[ArchConfig],
    designed: np.ndarray,
    timings: list[dict[str, Any]],
    again_idx: np.ndarray,
    again: list[dict[str, Any]],
    *,
    seed: int = 0,
    seconds: float | None = None,
    block_drift: float | None = None,
    reference: str | None = None,
) -> Validation:
    """Noise verdict, calibration fit and scores for whole subnets measured on the table's machine.

    Timings that carry `reference_ms` (measured beside the speed reference subnet, whose key is `reference`)
    are read at its median speed over the run. Stores the results in `table.metadata` (validation,
    calibration and the subnet reference speed when trusted, else validation_rejected) and returns it.
    """
    designed = np.asarray(designed, bool)
    again_idx = np.asarray(again_idx, dtype=np.int64)
    speed = ort_timing.reference_speed([*timings, *again])
    measured = at_one_speed(timings, speed, "whole-subnet timings of the validation")
    verdict = _verdict(measured, speed, timings, again_idx, again, block_drift)
    f = TableFeatures(table, space)(archs)
    calibration = cal.fit(f, measured)
    scores, small = _scores(f, measured, designed, calibration)
    result = Validation(
        n=len(archs),
        n_design=int(designed.sum()),
        seed=seed,
        **scores,
        smallest={"arch": archs[small.pop("index")].key, **small},
        spread_median=round(float(np.median([t.get("spread", 0.0) for t in timings])), 4),
        noise=verdict,
        trusted=verdict.trusted,
        measured_ms_range=[round(float(measured.min()), 4), round(float(measured.max()), 4)],
        speed_reference={"subnet": reference, "subnet_ms": None if speed is None else round(speed, 6),
                         "subnet_range": _reference_range([*timings, *again])},
        seconds=None if seconds is None else round(seconds, 1),
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _store_validation(table, result, calibration, _samples(archs, designed, f, measured, timings), speed, reference)
    return result


def _verdict(
    measured: np.ndarray, speed: float | None, timings: list[dict[str, Any]], again_idx: np.ndarray,
    again: list[dict[str, Any]], block_drift: float | None,
) -> NoiseVerdict:
    """The noise verdict on the repeats read at the run's speed, plus how far apart they were before that."""
    measured_again = at_one_speed(again, speed, "whole-subnet timings of the validation (repeats)")
    verdict = noise_verdict(measured[again_idx], measured_again, timings + again, block_drift)
    if speed is not None and len(again):
        raw = np.array([t["median_ms"] for t in again]) / np.array([timings[i]["median_ms"] for i in again_idx])
        verdict = replace(verdict, repeat_median_diff_raw=round(float(np.median(np.abs(raw - 1))), 4))
    return verdict


def _scores(
    f: dict[str, np.ndarray], measured: np.ndarray, designed: np.ndarray, calibration: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each prediction kind's scores over the random subnets (the design points always train; all subnets are
    scored when fewer than 5 are random), and the smallest subnet's figures."""
    if (~designed).sum() >= 5:
        score, fixed = ~designed, designed
    else:
        score, fixed = np.ones(len(measured), bool), None
    cv = cal.cross_validated(f, measured, always_train=fixed)
    legacy_cv = cal.cross_validated(
        f, measured, fitter=lambda g, m: cal.fit_linear(g["sum_ms"], g["blocks"], m), always_train=fixed
    )

    def scored(pred: np.ndarray) -> Scores:
        return Scores.from_dict(cal.metrics(pred[score], measured[score]))

    scores = {"n_scored": int(score.sum()), "raw": scored(f["sum_ms"]), "calibrated_cv5": scored(cv),
              "calibrated_in_sample": scored(cal.apply(calibration, f)), "linear_sum_blocks_cv5": scored(legacy_cv)}
    small = int(np.argmin(f["sum_ms"]))
    return scores, {
        "index": small,
        "measured_ms": round(float(measured[small]), 5),
        "cv_predicted_ms": round(float(cv[small]), 5),
        "linear_sum_blocks_cv_predicted_ms": round(float(legacy_cv[small]), 5),
    }


def _samples(
    archs: list[ArchConfig], designed: np.ndarray, f: dict[str, np.ndarray], measured: np.ndarray,
    timings: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One stored row per measured subnet: its block sum, its time at the reference speed and its statistics."""
    return [
        {
            "arch": a.key,
            "design": bool(d),
            "sum_ms": round(float(s), 5),
            "blocks": int(b),
            "measured_ms": round(float(m), 5),  # median_ms read at the reference speed
            **ort_timing.TimingStats.from_dict(t).sample(),
        }
        for a, d, s, b, m, t in zip(archs, designed, f["sum_ms"], f["blocks"], measured, timings)
    ]


def _store_validation(
    table: LatencyTable, result: Validation, calibration: dict[str, Any], samples: list[dict[str, Any]],
    speed: float | None, reference: str | None,
) -> None:
    """A trusted validation becomes the table's calibration; a rejected one is kept aside, the old one stays."""
    if result.is_trusted:
        table.metadata["validation"] = result.to_dict()
        table.metadata["calibration"] = calibration
        table.metadata["validation_samples"] = samples
        table.metadata.pop("validation_rejected", None)
        if speed is not None:
            table.metadata["speed_reference"] = {
                **(table.metadata.get("speed_reference") or {}), "subnet": reference, "subnet_ms": round(speed, 6)
            }
    else:
        table.metadata["validation_rejected"] = {
            **result.to_dict(), "would_be_calibration": calibration, "samples": samples
        }


# ---------------------------------------------------------------------------- one entry point
def validation_size(table: LatencyTable, validate: int | None) -> int:
    """How many whole subnets to measure: `validate`, or by default DEFAULT_VALIDATE unless the table
    already carries a calibration of the current kind (a resumed, calibrated table is left as it is)."""
    if validate is not None:
        return validate
    return 0 if (table.metadata.get("calibration") or {}).get("kind") == cal.KIND else DEFAULT_VALIDATE


@dataclass
class ProfileResult:
    table: LatencyTable
    path: Path
    validation: Validation | None  # None when no whole subnets were measured this time


def profile(
    space: SearchSpace,
    target: Target,
    out: str | Path | None = None,
    *,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    validate: int | None = None,
    seed: int = 0,
    note: str | None = None,
    on_blocks: Progress | None = None,
    on_subnets: Progress | None = None,
    pin: bool = True,
) -> ProfileResult:
    """Measure (or resume) the table for target x space on this machine, then validate and calibrate.

    out: default `default_table_path` (the user folder, never the package). validate: whole subnets
    to measure; None = `DEFAULT_VALIDATE` when the table has no trusted calibration yet, else none.
    """
    path = Path(out) if out is not None else default_table_path(target, space)
    with table_lock(path):
        timer = Timer(target, threads, warmup, repeats, pin=pin)
        table = build_table(space, timer, path, on_progress=on_blocks, note=note)
        validate = validation_size(table, validate)
        result = None
        if validate:
            result = validate_table(space, table, timer, validate, seed=seed, on_progress=on_subnets)
    return ProfileResult(table, path, result)
