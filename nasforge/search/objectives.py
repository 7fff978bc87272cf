"""Objectives, constraints and the one batched evaluator every engine calls.

Metrics: ``accuracy`` (predicted top-1 %, maximised), ``latency`` (ms on the target,
minimised), ``macs`` and ``params`` (minimised). Engines minimise; the sign flip for
accuracy happens in exactly one place: `SearchProblem.evaluate`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.blocksum import BlockSum
from nasforge.errors import ConfigError, NasforgeError
from nasforge.layers import layer_macs, layer_params
from nasforge.space import SearchSpace


class SearchError(NasforgeError):
    """A search cannot run or cannot meet its constraints."""


# metric name -> (column in metric dicts, maximise?, unit for messages)
METRICS: dict[str, tuple[str, bool, str]] = {
    "accuracy": ("accuracy", True, "%"),
    "latency": ("latency_ms", False, "ms"),
    "macs": ("macs", False, ""),
    "params": ("params", False, ""),
}
COLUMNS = ("accuracy", "latency_ms", "macs", "params")

_UNITS = {
    "latency": {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 1e-3},
    "macs": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9},
    "params": {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9},
    "accuracy": {"": 1.0, "%": 1.0},
}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|>=|<|>|=)?\s*(.*?)\s*$")
_VALUE_RE = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)$")


@dataclass(frozen=True)
class Constraint:
    """A hard bound `metric <= value` or `metric >= value` (value in the metric's base unit)."""

    metric: str
    op: str
    value: float
    text: str

    @property
    def column(self) -> str:
        return METRICS[self.metric][0]

    def violation(self, values: np.ndarray) -> np.ndarray:
        """pymoo-style G: <= 0 where satisfied."""
        return values - self.value if self.op == "<=" else self.value - values

    def satisfied(self, values: np.ndarray) -> np.ndarray:
        return self.violation(values) <= 0


def parse_constraint(text: str) -> Constraint:
    """Parse "latency<=15ms", "macs<=300M", "params<=5M", "accuracy>=70"; one-line ConfigError otherwise."""
    m = _CONSTRAINT_RE.match(text)
    if not m:
        raise ConfigError(f"constraint {text!r}: expected METRIC<=VALUE or METRIC>=VALUE, e.g. 'latency<=15ms'")
    metric, op, rest = m.group(1).lower(), m.group(2), m.group(3)
    if metric not in METRICS:
        raise ConfigError(f"constraint {text!r}: unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if op not in ("<=", ">="):
        raise ConfigError(f"constraint {text!r}: operator must be '<=' or '>=' (constraints are inclusive bounds)")
    v = _VALUE_RE.match(rest)
    if not v:
        raise ConfigError(f"constraint {text!r}: {rest!r} is not a number with an optional unit")
    unit = v.group(2).lower()
    units = _UNITS[metric]
    if unit not in units:
        raise ConfigError(
            f"constraint {text!r}: unit {v.group(2)!r} is not valid for {metric}; "
            f"use one of {', '.join(u or '(none)' for u in units)}"
        )
    return Constraint(metric, op, float(v.group(1)) * units[unit], text.strip())


def parse_objectives(text: str | Sequence[str]) -> tuple[str, ...]:
    """ "accuracy,latency" -> ("accuracy", "latency"); at least one, no repeats."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise ConfigError("--objectives needs at least one of " + ", ".join(METRICS))
    for n in names:
        if n not in METRICS:
            raise ConfigError(f"unknown objective {n!r}; expected one of {', '.join(METRICS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives repeat a metric: {','.join(names)}")
    return tuple(names)


class AccuracyModel(Protocol):
    def predict(self, features: np.ndarray) -> np.ndarray: ...


class LatencyModel(Protocol):
    target: str
    source: str

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray: ...


class CostModel:
    """Exact MACs and parameter counts for whole batches of encodings (per-block tables, `BlockSum`)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._sum = BlockSum(space, lambda spec: (layer_macs(spec), layer_params(spec)))

    @property
    def exact_tables(self) -> bool:
        """Whether the vectorised per-block tables are in use (else per-arch sums, memoised)."""
        return self._sum.decomposable

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(macs, params) as int64 arrays for canonical encodings."""
        sums, _ = self._sum(genes)
        y = np.rint(sums).astype(np.int64)
        return y[:, 0], y[:, 1]


class Evaluator:
    """Batch of integer genes -> metric arrays (accuracy, latency_ms, macs, params), cached by canonical arch."""

    def __init__(
        self,
        space: SearchSpace,
        accuracy: AccuracyModel | None = None,
        latency: LatencyModel | None = None,
        *,
        cost: CostModel | None = None,
    ) -> None:
        """`cost`: share another evaluator's MACs/params tables (they depend on the space only)."""
        self.space = space
        self.accuracy = accuracy
        self.latency = latency
        self._cost = cost
        self.calls = 0
        self.evaluations = 0
        self._cache: dict[bytes, np.ndarray] = {}

    @property
    def cost(self) -> CostModel:
        """Built on first use (it probes the space), so fail-fast checks never wait for it."""
        if self._cost is None:
            self._cost = CostModel(self.space)
        return self._cost

    @property
    def latency_source(self) -> str | None:
        return None if self.latency is None else str(self.latency.source)

    def canonical(self, genes: np.ndarray) -> np.ndarray:
        """Zero the genes of skipped blocks so one network has one encoding."""
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        if np.any(genes < 0) or np.any(genes >= self.space.gene_sizes[None, :]):
            raise SearchError("an engine produced out-of-range genes")
        return self.space.canonical_genes(genes)

    def archs(self, genes: np.ndarray) -> list[ArchConfig]:
        """The archs of a batch of encodings (vectorised decode)."""
        return self.space.decode_batch(self.canonical(genes))

    def prime(self, genes: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        """Remember metrics computed elsewhere (a resumed search's history) as if evaluated here."""
        genes = self.canonical(genes)
        table = np.stack([np.asarray(metrics[c], dtype=np.float64) for c in COLUMNS], axis=1)
        for row, values in zip(genes, table):
            self._cache.setdefault(row.tobytes(), values)

    def __call__(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        genes = self.canonical(genes)
        self.calls += 1
        self.evaluations += len(genes)
        keys = [row.tobytes() for row in genes]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        uniq: dict[bytes, int] = {}
        for i in missing:
            uniq.setdefault(keys[i], i)
        if uniq:
            idx = np.fromiter(uniq.values(), dtype=np.int64)
            rows = self.compute(genes[idx])
            for k, row in zip(uniq, rows):
                self._cache[k] = row
        table = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 4))
        return {c: table[:, j] for j, c in enumerate(COLUMNS)}

    def compute(self, genes: np.ndarray, columns: Sequence[str] = COLUMNS) -> np.ndarray:
        """Metrics of canonical encodings without the cache (NaN in columns not asked for or not modelled)."""
        out = np.full((len(genes), 4), np.nan)
        if self.accuracy is not None and "accuracy" in columns:
            out[:, 0] = np.asarray(self.accuracy.predict(self.space.features(genes)), dtype=np.float64).reshape(-1)
        if self.latency is not None and "latency_ms" in columns:
            out[:, 1] = np.asarray(self.latency.predict(self.archs(genes)), dtype=np.float64).reshape(-1)
        if "macs" not in columns:
            return out
        macs, params = self.cost(genes)
        out[:, 2] = macs
        out[:, 3] = params
        return out


@dataclass
class Evaluation:
    """One batch: raw metrics, minimisation objectives F and constraint values G (<= 0 feasible)."""

    genes: np.ndarray
    metrics: dict[str, np.ndarray]
    F: np.ndarray
    G: np.ndarray

    @property
    def feasible(self) -> np.ndarray:
        return np.all(self.G <= 0, axis=1) if self.G.shape[1] else np.ones(len(self.F), dtype=bool)


@dataclass
class SearchProblem:
    """Objectives + constraints over an evaluator; the single minimisation adapter."""

    space: SearchSpace
    evaluator: Evaluator
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()

    def __post_init__(self) -> None:
        for name in (*self.objectives, *(c.metric for c in self.constraints)):
            self._require(name)

    def _require(self, metric: str) -> None:
        if metric == "accuracy" and self.evaluator.accuracy is None:
            raise ConfigError("accuracy is used as an objective or constraint but no accuracy predictor was given")
        if metric == "latency" and self.evaluator.latency is None:
            raise ConfigError("latency is used as an objective or constraint but no latency model (--target) was given")

    @property
    def n_obj(self) -> int:
        return len(self.objectives)

    @property
    def n_constr(self) -> int:
        return len(self.constraints)

    def evaluate(self, genes: np.ndarray) -> Evaluation:
        genes = self.evaluator.canonical(genes)
        metrics = self.evaluator(genes)
        return Evaluation(genes, metrics, self.to_minimise(metrics), self.violations(metrics))

    def to_minimise(self, metrics: dict[str, np.ndarray]) -> np.ndarray:
        cols = []
        for name in self.objectives:
            column, maximise, _ = METRICS[name]
            cols.append(-metrics[column] if maximise else metrics[column])
        return np.stack(cols, axis=1).astype(np.float64)

    def violations(self, metrics: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(metrics.values())))
        if not self.constraints:
            return np.zeros((n, 0))
        return np.stack([c.violation(metrics[c.column]) for c in self.constraints], axis=1).astype(np.float64)


def metric_range(problem: SearchProblem, metric: str) -> tuple[float, float]:
    """(smallest-subnet value, largest-subnet value) of a cost metric, min/max over resolutions.

    Exact for MACs and params (monotone in every choice); for latency also the min/max over a fixed
    probe of random subnets, so a LUT that is not monotone cannot make a feasible bound look infeasible
    in the common case (it remains a bound estimate, said so in the error).
    """
    s = problem.space
    lo_genes = np.zeros((s.gene_sizes[0], s.num_genes), dtype=np.int64)
    lo_genes[:, 0] = np.arange(s.gene_sizes[0])
    hi_genes = np.tile(s.gene_sizes - 1, (s.gene_sizes[0], 1))
    hi_genes[:, 0] = np.arange(s.gene_sizes[0])
    ev = problem.evaluator
    if metric in ("macs", "params"):
        count = s.macs if metric == "macs" else s.params
        lo = [count(a) for a in ev.archs(lo_genes)]
        hi = [count(a) for a in ev.archs(hi_genes)]
    else:
        # A latency model need not be monotone in every choice: a fixed random probe widens the range.
        probe = s.sample_genes(np.random.default_rng(0), 256)
        column = METRICS[metric][0]
        j = COLUMNS.index(column)
        lo = ev.compute(ev.canonical(np.concatenate([lo_genes, probe])), [column])[:, j]
        hi = ev.compute(ev.canonical(np.concatenate([hi_genes, probe])), [column])[:, j]
    return float(np.min(lo)), float(np.max(hi))


def check_feasible(problem: SearchProblem) -> None:
    """Fail fast when a cost constraint cannot hold: the smallest subnet already exceeds it."""
    for c in problem.constraints:
        if c.metric == "accuracy":
            continue
        lo, hi = metric_range(problem, c.metric)
        unit = METRICS[c.metric][2]
        if (c.op == "<=" and lo > c.value) or (c.op == ">=" and hi < c.value):
            how = (
                ""
                if c.metric != "latency"
                else f" on {problem.evaluator.latency.target} ({problem.evaluator.latency_source})"
            )  # type: ignore[union-attr]
            raise SearchError(
                f"constraint {c.text!r} is infeasible: {c.metric}{how} ranges {_fmt(lo, unit)} (smallest subnet) "
                f"to {_fmt(hi, unit)} (largest subnet) over space '{problem.space.name}'"
            )


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3g} ms"
    if unit == "%":
        return f"{value:.2f}%"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"
