"""`SearchConfig`: the resolved settings of one search (YAML `--config` merged under the flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nasforge.config import Validated, check, load_dataclass
from nasforge.errors import ConfigError
from nasforge.io import read_yaml
from nasforge.search.engines.base import ENGINES
from nasforge.search.objectives import Constraint, parse_constraint, parse_objectives


@dataclass(frozen=True)
class SearchConfig(Validated):
    run: str | None = None
    space: str | None = None
    predictor: str | None = None
    target: str | None = None
    lut: str | None = None
    engine: str = field(default="nsga2", metadata=check(choices=ENGINES))
    objectives: tuple[str, ...] = ("accuracy", "latency")
    constraints: tuple[str, ...] = ()
    budget: int = field(default=10_000, metadata=check(gt=0))
    seed: int = field(default=0, metadata=check(ge=0))
    out: str | None = None  # default: RUN_DIR/search-TARGET, or ./search-out without a run
    storage: str | None = None
    worker: int = field(default=0, metadata=check(ge=0))
    pop_size: int = field(default=100, metadata=check(ge=4))
    mutation_rate: float | None = field(default=None, metadata=check(gt=0, le=1))
    resume: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_objectives(self.objectives)
        self.parsed_constraints()  # malformed constraints fail here, before anything loads

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


def resolve_config(file_values: dict[str, Any], flags: dict[str, Any], source: str | None = None) -> SearchConfig:
    """Defaults < config file < flags given on the command line (None = not given); checked field by field."""
    values = {**file_values, **{k: v for k, v in flags.items() if v is not None and v != ()}}
    if isinstance(values.get("objectives"), str):
        values["objectives"] = parse_objectives(values["objectives"])
    if isinstance(values.get("constraints"), str):
        values["constraints"] = (values["constraints"],)
    for key in ("run", "space", "predictor", "target", "lut", "out", "storage"):
        if isinstance(values.get(key), Path):
            values[key] = str(values[key])
    cfg = load_dataclass(SearchConfig, values, source=source)
    if cfg.run is None and cfg.space is None:
        raise ConfigError("give --run RUN_DIR (a trained run) or --space SPACE with --predictor PATH")
    return cfg
