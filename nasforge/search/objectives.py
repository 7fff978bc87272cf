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
from nasforge.errors import ConfigError, NasforgeError
from nasforge.layers import network_macs, network_params
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
    """"accuracy,latency" -> ("accuracy", "latency"); at least one, no repeats."""
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
    """Exact MACs and parameter counts for whole batches of encodings.

    Per-arch `space.macs` costs ~70 us (too slow for 10k evaluations/s). When a space's cost is
    a per-resolution base plus one term per active (stage, position) block that depends only on
    that block's own genes (true for MobileNetV3 spaces), we solve for those terms once and
    check them against `space.macs`/`space.params` on held-out archs; otherwise (e.g. ResNet
    width genes couple neighbouring stages) we fall back to per-arch counting with a cache.
    """

    def __init__(self, space: SearchSpace, rng_seed: int = 0) -> None:
        self.space = space
        self.exact_tables = False
        self._cache: dict[bytes, tuple[int, int]] = {}
        self._build(np.random.default_rng(rng_seed))

    # Each block group = the slot genes (kernel and/or expand) at one (stage, position).
    def _groups(self) -> list[list[int]]:
        layout = self.space.gene_layout
        first = layout.kernel.start
        by_pos: dict[tuple[int, int], list[int]] = {}
        for g in range(first, layout.expand.stop):
            j = g - first
            key = (int(layout.slot_stage[j]), int(layout.slot_position[j]))
            by_pos.setdefault(key, []).append(g)
        return list(by_pos.values())

    def _joint(self, genes: np.ndarray, group: list[int]) -> np.ndarray:
        joint = np.zeros(genes.shape[0], dtype=np.int64)
        for g in group:
            joint = joint * int(self.space.gene_sizes[g]) + genes[:, g]
        return joint

    def _design(self, genes: np.ndarray) -> np.ndarray:
        """Rows of one resolution: [1, one-hot joint choice of each active block group]."""
        n = genes.shape[0]
        mask = self.space.active_mask(genes)
        cols = [np.ones((n, 1))]
        for group in self._groups:
            block = np.zeros((n, self._n_joint))
            block[np.arange(n), self._joint(genes, group)] = mask[:, group[0]]
            cols.append(block)
        return np.concatenate(cols, axis=1)

    def _build(self, rng: np.random.Generator) -> None:
        s = self.space
        self._groups = self._groups()
        if len(s.width_choices) or not self._groups:
            return
        self._n_joint = max(int(np.prod(s.gene_sizes[g])) for g in self._groups)
        n_res, n_groups = int(s.gene_sizes[0]), len(self._groups)
        base = np.zeros((n_res, 2))
        table = np.zeros((n_res, n_groups, self._n_joint, 2))
        for r in range(n_res):
            # Probes: every (group, joint choice) with all blocks on, then random archs; check on held-out.
            probes = []
            for group in self._groups:
                sizes = s.gene_sizes[group]
                for joint in range(int(np.prod(sizes))):
                    g = s.sample_genes(rng, 1)[0]
                    depth = s.gene_layout.depth
                    g[depth] = s.gene_sizes[depth] - 1
                    rem = joint
                    for gi, size in zip(reversed(group), reversed(sizes)):
                        g[gi] = rem % int(size)
                        rem //= int(size)
                    probes.append(g)
            fit = np.concatenate([np.stack(probes), s.sample_genes(rng, len(probes) // 4 + 20)])
            check = np.concatenate(
                [s.sample_genes(rng, 12), np.zeros((1, s.num_genes), np.int64), (s.gene_sizes - 1)[None]]
            )
            fit[:, 0] = r
            check[:, 0] = r
            coef, *_ = np.linalg.lstsq(self._design(fit), self._exact(fit).astype(np.float64), rcond=None)
            if not np.array_equal(np.rint(self._design(check) @ coef).astype(np.int64), self._exact(check)):
                return
            base[r] = coef[0]
            table[r] = coef[1:].reshape(n_groups, self._n_joint, 2)
        self._base, self._table = base, table
        self.exact_tables = True

    def _tabled(self, genes: np.ndarray) -> np.ndarray:
        r = genes[:, 0]
        y = self._base[r].copy()
        mask = self.space.active_mask(genes)
        for gi, group in enumerate(self._groups):
            y += self._table[r, gi, self._joint(genes, group)] * mask[:, group[0], None]
        return np.rint(y).astype(np.int64)

    def _exact(self, genes: np.ndarray) -> np.ndarray:
        out = np.zeros((genes.shape[0], 2), dtype=np.int64)
        for i, row in enumerate(genes):
            key = row.tobytes()
            hit = self._cache.get(key)
            if hit is None:
                layers = self.space.layers(self.space.decode(row))
                hit = (network_macs(layers), network_params(layers))
                self._cache[key] = hit
            out[i] = hit
        return out

    def __call__(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(macs, params) as int64 arrays for canonical encodings."""
        if self.exact_tables:
            y = self._tabled(genes)
        else:
            y = self._exact(genes)
        return y[:, 0], y[:, 1]


class Evaluator:
    """Batch of integer genes -> metric arrays (accuracy, latency_ms, macs, params), cached by canonical arch."""

    def __init__(
        self,
        space: SearchSpace,
        accuracy: AccuracyModel | None = None,
        latency: LatencyModel | None = None,
    ) -> None:
        self.space = space
        self.accuracy = accuracy
        self.latency = latency
        self._cost: CostModel | None = None
        self.calls = 0
        self.evaluations = 0
        self._cache: dict[bytes, np.ndarray] = {}
        # Per-gene choice values for a vectorised decode.
        width = int(space.gene_sizes.max())
        self._values = np.zeros((space.num_genes, width))
        for g, choices in enumerate(space.gene_choices):
            self._values[g, : len(choices)] = choices

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
        return np.where(self.space.active_mask(genes), genes, 0)

    def archs(self, genes: np.ndarray) -> list[ArchConfig]:
        """Vectorised `decode_batch` for canonical encodings."""
        s = self.space
        genes = self.canonical(genes)
        vals = self._values[np.arange(s.num_genes)[None, :], genes]
        vals = np.where(s.active_mask(genes), vals, 0.0)
        layout = s.gene_layout
        k0, e0, w0 = layout.kernel.start, layout.expand.start, layout.width.start
        out = []
        for row in vals.tolist():
            out.append(
                ArchConfig(int(row[0]), tuple(row[1:k0]), tuple(row[k0:e0]), tuple(row[e0:w0]), tuple(row[w0:]))
            )
        return out

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
            rows = self._compute(genes[idx])
            for k, row in zip(uniq, rows):
                self._cache[k] = row
        table = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 4))
        return {c: table[:, j] for j, c in enumerate(COLUMNS)}

    def _compute(self, genes: np.ndarray, columns: Sequence[str] = COLUMNS) -> np.ndarray:
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
        lo = ev._compute(ev.canonical(np.concatenate([lo_genes, probe])), [column])[:, j]
        hi = ev._compute(ev.canonical(np.concatenate([hi_genes, probe])), [column])[:, j]
    return float(np.min(lo)), float(np.max(hi))


def check_feasible(problem: SearchProblem) -> None:
    """Fail fast when a cost constraint cannot hold: the smallest subnet already exceeds it."""
    for c in problem.constraints:
        if c.metric == "accuracy":
            continue
        lo, hi = metric_range(problem, c.metric)
        unit = METRICS[c.metric][2]
        if (c.op == "<=" and lo > c.value) or (c.op == ">=" and hi < c.value):
            how = "" if c.metric != "latency" else f" on {problem.evaluator.latency.target} ({problem.evaluator.latency_source})"  # type: ignore[union-attr]
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

