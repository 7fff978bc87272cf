"""`SearchConfig`: the resolved settings of one search (YAML `--config` merged under the flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError
from nasforge.io import read_yaml
from nasforge.search.engines import ENGINES
from nasforge.search.objectives import Constraint, parse_constraint, parse_objectives


@dataclass(frozen=True)
class SearchConfig:
    run: str | None = None
    space: str | None = None
    predictor: str | None = None
    target: str | None = None
    lut: str | None = None
    engine: str = "nsga2"
    objectives: tuple[str, ...] = ("accuracy", "latency")
    constraints: tuple[str, ...] = ()
    budget: int = 10_000
    seed: int = 0
    out: str | None = None  # default: RUN_DIR/search-TARGET, or ./search-out without a run
    storage: str | None = None
    worker: int = 0
    pop_size: int = 100
    mutation_rate: float | None = None
    resume: bool = True

    def parsed_constraints(self) -> tuple[Constraint, ...]:
        return tuple(parse_constraint(c) for c in self.constraints)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["constraints"] = list(self.constraints)
        return d


_ALIASES = {"constraint": "constraints", "population": "pop_size"}


def load_config_file(path: Path) -> dict[str, Any]:
    raw = read_yaml(path, ConfigError, "search config")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a search config must be a YAML mapping")
    raw = dict(raw.get("search", raw)) if isinstance(raw.get("search"), dict) else raw
    known = {f.name for f in fields(SearchConfig)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = _ALIASES.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if k not in known:
            raise ConfigError(f"{path}: unknown key {key!r}; expected one of {', '.join(sorted(known))}")
        out[k] = value
    return out


def resolve_config(file_values: dict[str, Any], flags: dict[str, Any]) -> SearchConfig:
    """Defaults < config file < flags given on the command line (None = not given); validated."""
    values = {**file_values, **{k: v for k, v in flags.items() if v is not None and v != ()}}
    cfg = SearchConfig()
    try:
        if "objectives" in values:
            values["objectives"] = parse_objectives(values["objectives"])
        if "constraints" in values:
            c = values["constraints"]
            values["constraints"] = (c,) if isinstance(c, str) else tuple(str(x) for x in c)
        for key in ("budget", "seed", "worker", "pop_size"):
            if key in values and (isinstance(values[key], bool) or not isinstance(values[key], int)):
                raise ConfigError(f"{key} must be an integer, got {values[key]!r}")
        for key in ("run", "space", "predictor", "target", "lut", "out", "storage"):
            if key in values and values[key] is not None:
                values[key] = str(values[key])
        cfg = replace(cfg, **values)
    except TypeError as exc:
        raise ConfigError(f"invalid search config: {exc}") from None
    if cfg.engine not in ENGINES:
        raise ConfigError(f"unknown engine {cfg.engine!r}; expected one of {', '.join(ENGINES.names())}")
    if cfg.budget <= 0:
        raise ConfigError(f"budget must be positive, got {cfg.budget}")
    if cfg.pop_size < 4:
        raise ConfigError(f"pop_size must be at least 4, got {cfg.pop_size}")
    if cfg.mutation_rate is not None and not 0 < cfg.mutation_rate <= 1:
        raise ConfigError(f"mutation_rate must be in (0, 1], got {cfg.mutation_rate}")
    if cfg.run is None and cfg.space is None:
        raise ConfigError("give --run RUN_DIR (a trained run) or --space SPACE with --predictor PATH")
    cfg.parsed_constraints()  # malformed constraints fail here, before anything loads
    return cfg
