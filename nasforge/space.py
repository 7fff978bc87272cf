"""`SearchSpace`: a space built once from YAML; the only object that knows the encoding.

Genes, in order: resolution, one depth per stage, one kernel per kernel slot, one expand
ratio per expand slot, one width multiplier per width slot. A slot belongs to one block
position of one stage and is *active* only while that stage's depth reaches it. Inactive
slots are 0 in an `ArchConfig` and gene 0 in an encoding, so `decode(encode(a)) == a`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import ArchError, SpaceError
from nasforge.io import read_yaml
from nasforge.layers import LayerSpec, network_macs, network_params
from nasforge.resources import shipped_dir

SPACES_DIR = shipped_dir("search_spaces")


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: blocks of one kind whose depth, kernel and expansion vary."""

    name: str
    block: str
    channels: int
    stride: int
    act: str
    se: bool
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    width_slot: int | None = None

    @property
    def max_depth(self) -> int:
        return max(self.depths)


@dataclass(frozen=True)
class SlotSpec:
    """A per-block choice, active while depths[stage] > position."""

    stage: int
    position: int
    choices: tuple[float, ...]


@dataclass(frozen=True)
class GeneLayout:
    """Where each kind of gene sits in an encoding, and which block position each slot gene belongs to."""

    depth: slice
    kernel: slice
    expand: slice
    width: slice
    slot_stage: np.ndarray  # per slot gene (kernel then expand slots): its stage index
    slot_position: np.ndarray  # per slot gene: its block position within the stage


@dataclass(frozen=True)
class ParsedSpace:
    """What a family's parser extracts from YAML."""

    stages: tuple[StageSpec, ...]
    width_choices: tuple[tuple[float, ...], ...]
    build: dict[str, Any]


class SearchSpace:
    """An elastic search space: sampling, encoding, validation and the static layer list of any arch."""

    def __init__(
        self,
        name: str,
        family: str,
        resolutions: Sequence[int],
        parsed: ParsedSpace,
        *,
        num_classes: int,
        width_mult: float = 1.0,
        description: str = "",
        raw: dict[str, Any] | None = None,
        source: str = "<memory>",
    ) -> None:
        self.name = name
        self.family = family
        self.description = description
        self.source = source
        self.resolutions = tuple(int(r) for r in resolutions)
        self.stages = parsed.stages
        self.width_choices = parsed.width_choices
        self.build = parsed.build
        self.num_classes = int(num_classes)
        self.width_mult = float(width_mult)
        self._raw = raw or {}
        self.kernel_slots = tuple(
            SlotSpec(i, p, tuple(s.kernel_sizes))
            for i, s in enumerate(self.stages)
            if len(s.kernel_sizes) > 1
            for p in range(s.max_depth)
        )
        self.expand_slots = tuple(
            SlotSpec(i, p, tuple(s.expand_ratios))
            for i, s in enumerate(self.stages)
            if len(s.expand_ratios) > 1
            for p in range(s.max_depth)
        )
        self._gene_choices: list[tuple[float, ...]] = [tuple(float(r) for r in self.resolutions)]
        self._gene_names = ["resolution"]
        for i, s in enumerate(self.stages):
            self._gene_choices.append(tuple(float(d) for d in s.depths))
            self._gene_names.append(f"depth[{s.name}]")
        for j, slot in enumerate(self.kernel_slots):
            self._gene_choices.append(tuple(float(c) for c in slot.choices))
            self._gene_names.append(f"kernel_sizes[{j}]")
        for j, slot in enumerate(self.expand_slots):
            self._gene_choices.append(tuple(float(c) for c in slot.choices))
            self._gene_names.append(f"expand_ratios[{j}]")
        for j, choices in enumerate(self.width_choices):
            self._gene_choices.append(tuple(float(c) for c in choices))
            self._gene_names.append(f"width_mults[{j}]")
        self.gene_sizes = np.array([len(c) for c in self._gene_choices], dtype=np.int64)
        # Slot genes: which depth gene switches them and at which position.
        self._n_depth = len(self.stages)
        self._k0 = 1 + self._n_depth
        self._e0 = self._k0 + len(self.kernel_slots)
        self._w0 = self._e0 + len(self.expand_slots)
        slot_list = list(self.kernel_slots) + list(self.expand_slots)
        self._slot_stage = np.array([s.stage for s in slot_list], dtype=np.int64)
        self._slot_pos = np.array([s.position for s in slot_list], dtype=np.int64)
        max_choices = int(self.gene_sizes.max())
        self._depth_values = np.zeros((self._n_depth, max_choices), dtype=np.int64)
        for i, s in enumerate(self.stages):
            self._depth_values[i, : len(s.depths)] = s.depths
        self._feature_genes = np.array([g for g in range(len(self.gene_sizes)) if self.gene_sizes[g] > 1])
        sizes = self.gene_sizes[self._feature_genes]
        self._feature_offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.num_features = int(sizes.sum())

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """Hash of the normalised YAML and build options; every artifact records it."""
        payload = json.dumps(
            {"space": self._raw, "width_mult": self.width_mult, "num_classes": self.num_classes},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, family={self.family!r}, genes={self.num_genes})"

    @property
    def num_genes(self) -> int:
        return len(self.gene_sizes)

    @property
    def gene_names(self) -> list[str]:
        return list(self._gene_names)

    @property
    def gene_choices(self) -> tuple[tuple[float, ...], ...]:
        """The values each gene indexes (as floats)."""
        return tuple(self._gene_choices)

    @property
    def gene_layout(self) -> GeneLayout:
        return GeneLayout(
            depth=slice(1, self._k0),
            kernel=slice(self._k0, self._e0),
            expand=slice(self._e0, self._w0),
            width=slice(self._w0, self.num_genes),
            slot_stage=self._slot_stage.copy(),
            slot_position=self._slot_pos.copy(),
        )

    @property
    def feature_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(genes that have features, offset of each one's one-hot block) of `features`."""
        return self._feature_genes.copy(), self._feature_offsets.copy()

    @property
    def definition(self) -> dict[str, Any]:
        """The space's YAML content (a deep copy), enough to rebuild it with `SearchSpace.from_dict`."""
        return copy.deepcopy(self._raw)

    def with_options(self, *, num_classes: int | None = None, width_mult: float | None = None) -> SearchSpace:
        """The same space built for another class count or width multiplier."""
        allowed = tuple(self.build.get("width_mult_options", (1.0,)))
        wm = self.width_mult if width_mult is None else float(width_mult)
        if wm not in allowed:
            raise SpaceError(f"{self.name}: width multiplier {wm} not offered; expected one of {list(allowed)}")
        from nasforge.families import get_family

        return SearchSpace(
            self.name,
            self.family,
            self.resolutions,
            get_family(self.family).parse(self._raw, self.source),
            num_classes=self.num_classes if num_classes is None else num_classes,
            width_mult=wm,
            description=self.description,
            raw=self._raw,
            source=self.source,
        )

    # ------------------------------------------------------------------ counting
    def num_subnets(self, include_resolution: bool = False) -> int:
        """Distinct subnets (canonical archs); resolution multiplies in on request."""
        total = 1
        for stage in self.stages:
            n_k = len(stage.kernel_sizes) if len(stage.kernel_sizes) > 1 else 1
            n_e = len(stage.expand_ratios) if len(stage.expand_ratios) > 1 else 1
            per_block = n_k * n_e
            total *= sum(per_block**d for d in stage.depths)
        for choices in self.width_choices:
            total *= len(choices)
        if include_resolution:
            total *= len(self.resolutions)
        return total

    # ------------------------------------------------------------------ validation
    def validate(self, arch: ArchConfig) -> ArchConfig:
        """Check an arch against the space and return its canonical form (inactive slots 0)."""
        if arch.resolution not in self.resolutions:
            raise ArchError(
                f"resolution {arch.resolution} is not in space '{self.name}' "
                f"(expected one of {_short_list(self.resolutions)})"
            )
        self._check_len("depths", arch.depths, len(self.stages))
        self._check_len("kernel_sizes", arch.kernel_sizes, len(self.kernel_slots))
        self._check_len("expand_ratios", arch.expand_ratios, len(self.expand_slots))
        self._check_len("width_mults", arch.width_mults, len(self.width_choices))
        for i, (d, stage) in enumerate(zip(arch.depths, self.stages)):
            if d not in stage.depths:
                raise ArchError(f"depths[{i}] = {d} is not a choice of stage '{stage.name}' {list(stage.depths)}")
        for field_name, values, slots in (
            ("kernel_sizes", arch.kernel_sizes, self.kernel_slots),
            ("expand_ratios", arch.expand_ratios, self.expand_slots),
        ):
            for j, (v, slot) in enumerate(zip(values, slots)):
                active = arch.depths[slot.stage] > slot.position
                if v in slot.choices or (not active and v == 0):
                    continue
                raise ArchError(
                    f"{field_name}[{j}] = {_fmt(v)} is not in space '{self.name}' "
                    f"(expected one of {', '.join(_fmt(c) for c in slot.choices)})"
                )
        for j, (w, choices) in enumerate(zip(arch.width_mults, self.width_choices)):
            if w not in choices:
                raise ArchError(f"width_mults[{j}] = {_fmt(w)} is not one of {[_fmt(c) for c in choices]}")
        return self._mask(arch)

    canonical = validate

    def _check_len(self, name: str, values: Sequence[Any], expected: int) -> None:
        if len(values) != expected:
            raise ArchError(f"'{name}' has {len(values)} entries; space '{self.name}' expects {expected}")

    def _mask(self, arch: ArchConfig) -> ArchConfig:
        ks = tuple(
            k if arch.depths[s.stage] > s.position else 0 for k, s in zip(arch.kernel_sizes, self.kernel_slots)
        )
        es = tuple(
            e if arch.depths[s.stage] > s.position else 0.0 for e, s in zip(arch.expand_ratios, self.expand_slots)
        )
        return ArchConfig(arch.resolution, arch.depths, ks, es, arch.width_mults)

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    # ------------------------------------------------------------------ parsing archs
    def parse_arch(self, data: Any) -> ArchConfig:
        """Accept nasforge's JSON form or Once-for-All's `{ks, e, d, r}` dict; return the canonical arch."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ArchError(f"arch is not valid JSON: {exc.msg} at position {exc.pos}") from None
        if isinstance(data, dict) and "arch" in data and isinstance(data["arch"], dict):
            data = data["arch"]  # an entry of pareto.json or a sample line
        if isinstance(data, dict) and ({"ks", "d"} & set(data)):
            return self.from_ofa_dict(data)
        return self.validate(ArchConfig.from_dict(data))

    def from_ofa_dict(self, data: dict[str, Any]) -> ArchConfig:
        """Read Once-for-All's subnet dict (as OFA and DyNAS-T write it); inactive slots are ignored."""
        if self.family != "mobilenetv3":
            raise ArchError(f"Once-for-All's dict form is defined for MobileNetV3 spaces, not '{self.family}'")
        missing = [k for k in ("ks", "e", "d") if k not in data]
        if missing:
            raise ArchError(f"OFA arch dict is missing {missing}; expected keys ks, e, d and r")
        r = data.get("r", data.get("resolution", max(self.resolutions)))
        if isinstance(r, (list, tuple)):
            if len(r) != 1:
                raise ArchError(f"OFA 'r' must be one resolution, got {r!r}")
            r = r[0]
        n_slots = len(self.kernel_slots)
        if len(data["ks"]) != n_slots or len(data["e"]) != n_slots:
            raise ArchError(f"OFA 'ks' and 'e' need {n_slots} entries each for space '{self.name}'")
        arch = ArchConfig.from_dict(
            {
                "resolution": r,
                "depths": data["d"],
                "kernel_sizes": data["ks"],
                "expand_ratios": data["e"],
            }
        )
        return self.validate(arch)

    def to_ofa_dict(self, arch: ArchConfig) -> dict[str, Any]:
        """Write OFA's subnet dict; inactive slots get the smallest choice (OFA needs a value there)."""
        if self.family != "mobilenetv3":
            raise ArchError(f"Once-for-All's dict form is defined for MobileNetV3 spaces, not '{self.family}'")
        arch = self.validate(arch)
        ks = [k if k else int(min(s.choices)) for k, s in zip(arch.kernel_sizes, self.kernel_slots)]
        es = [int(e) if e else int(min(s.choices)) for e, s in zip(arch.expand_ratios, self.expand_slots)]
        return {"ks": ks, "e": es, "d": list(arch.depths), "r": arch.resolution}

    # ------------------------------------------------------------------ encoding
    def encode(self, arch: ArchConfig) -> np.ndarray:
        """Fixed-length integer vector: the index of each gene's value among its choices (0 when inactive)."""
        arch = self.validate(arch)
        values = self._values(arch)
        out = np.zeros(self.num_genes, dtype=np.int64)
        for g, v in enumerate(values):
            if v == 0 and g >= self._k0 and g < self._w0:
                continue  # inactive slot
            out[g] = self._gene_choices[g].index(float(v))
        return out

    def encode_batch(self, archs: Iterable[ArchConfig]) -> np.ndarray:
        rows = [self.encode(a) for a in archs]
        return np.stack(rows) if rows else np.zeros((0, self.num_genes), dtype=np.int64)

    def decode(self, genes: Sequence[int] | np.ndarray) -> ArchConfig:
        """Inverse of `encode`; inactive slot genes are ignored, so any in-bounds vector decodes."""
        vec = np.asarray(genes)
        if vec.shape != (self.num_genes,):
            raise ArchError(f"an encoding of space '{self.name}' has {self.num_genes} genes, got shape {vec.shape}")
        if np.any(vec < 0) or np.any(vec >= self.gene_sizes):
            bad = int(np.nonzero((vec < 0) | (vec >= self.gene_sizes))[0][0])
            raise ArchError(f"gene {self._gene_names[bad]} = {vec[bad]} is out of range 0..{self.gene_sizes[bad] - 1}")
        vals = [self._gene_choices[g][int(vec[g])] for g in range(self.num_genes)]
        depths = tuple(int(v) for v in vals[1 : self._k0])
        ks = tuple(int(v) for v in vals[self._k0 : self._e0])
        es = tuple(vals[self._e0 : self._w0])
        ws = tuple(vals[self._w0 :])
        return self._mask(ArchConfig(int(vals[0]), depths, ks, es, ws))

    def decode_batch(self, genes: np.ndarray) -> list[ArchConfig]:
        return [self.decode(row) for row in np.asarray(genes)]

    def _values(self, arch: ArchConfig) -> list[float]:
        return [
            float(arch.resolution),
            *map(float, arch.depths),
            *map(float, arch.kernel_sizes),
            *arch.expand_ratios,
            *arch.width_mults,
        ]

    def active_mask(self, genes: np.ndarray) -> np.ndarray:
        """For a batch of encodings, which genes matter (slot genes of skipped blocks do not)."""
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        mask = np.ones(genes.shape, dtype=bool)
        if len(self._slot_stage):
            depth_idx = genes[:, 1 + self._slot_stage]
            depth_val = self._depth_values[self._slot_stage[None, :], depth_idx]
            mask[:, self._k0 : self._w0] = depth_val > self._slot_pos[None, :]
        return mask

    def features(self, archs: Sequence[ArchConfig] | np.ndarray) -> np.ndarray:
        """One-hot features (OFA style: skipped blocks all-zero) for predictors; accepts archs or encodings."""
        if isinstance(archs, np.ndarray):
            genes = np.atleast_2d(archs).astype(np.int64)
        else:
            genes = self.encode_batch(archs)
        mask = self.active_mask(genes)
        n = genes.shape[0]
        out = np.zeros((n, self.num_features), dtype=np.float32)
        cols = self._feature_offsets[None, :] + genes[:, self._feature_genes]
        rows = np.repeat(np.arange(n), len(self._feature_genes)).reshape(n, -1)
        out[rows, cols] = mask[:, self._feature_genes].astype(np.float32)
        return out

    # ------------------------------------------------------------------ sampling
    def largest(self, resolution: int | None = None) -> ArchConfig:
        genes = self.gene_sizes - 1
        arch = self.decode(genes)
        return arch if resolution is None else self.validate(_with_res(arch, resolution))

    def smallest(self, resolution: int | None = None) -> ArchConfig:
        arch = self.decode(np.zeros(self.num_genes, dtype=np.int64))
        return arch if resolution is None else self.validate(_with_res(arch, resolution))

    def sample(self, rng: np.random.Generator) -> ArchConfig:
        """Each gene uniform over its choices (as OFA samples), then canonicalised."""
        return self.decode(self.sample_genes(rng, 1)[0])

    def sample_genes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return (rng.random((n, self.num_genes)) * self.gene_sizes[None, :]).astype(np.int64)

    def sample_many(self, rng: np.random.Generator, n: int) -> list[ArchConfig]:
        return self.decode_batch(self.sample_genes(rng, n))

    def sample_stratified(
        self, rng: np.random.Generator, n: int, *, bins: int = 10, pool_factor: int = 20
    ) -> list[ArchConfig]:
        """`n` distinct archs spread evenly over MACs (equal-width bins between smallest and largest).

        Uniform per-gene sampling piles archs up around the median MACs; predictors need the tails too.
        """
        if n <= 0:
            return []
        pool = list(dict.fromkeys(self.sample_many(rng, max(n * pool_factor, 200))))
        macs = np.array([self.macs(a) for a in pool], dtype=np.float64)
        lo, hi = self.macs(self.smallest()), self.macs(self.largest())
        edges = np.linspace(lo, hi + 1, bins + 1)
        which = np.clip(np.searchsorted(edges, macs, side="right") - 1, 0, bins - 1)
        buckets = [list(rng.permutation(np.nonzero(which == b)[0])) for b in range(bins)]
        chosen: list[int] = []
        while len(chosen) < min(n, len(pool)):
            progressed = False
            for bucket in buckets:
                if bucket and len(chosen) < n:
                    chosen.append(int(bucket.pop()))
                    progressed = True
            if not progressed:
                break
        return [pool[i] for i in chosen]

    def mutate(self, arch: ArchConfig, rng: np.random.Generator, prob: float = 0.1) -> ArchConfig:
        """Resample each gene with probability `prob` (OFA's evolution mutation)."""
        genes = self.encode(arch)
        flip = rng.random(self.num_genes) < prob
        fresh = self.sample_genes(rng, 1)[0]
        genes[flip] = fresh[flip]
        return self.decode(genes)

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: np.random.Generator) -> ArchConfig:
        """Uniform crossover: each gene from either parent with equal chance."""
        ga, gb = self.encode(a), self.encode(b)
        take_b = rng.random(self.num_genes) < 0.5
        return self.decode(np.where(take_b, gb, ga))

    # ------------------------------------------------------------------ cost
    def layers(self, arch: ArchConfig, num_classes: int | None = None) -> list[LayerSpec]:
        """The static blocks of `arch` (stem to classifier) with their input shapes."""
        from nasforge.families import get_family

        arch = self.validate(arch)
        return get_family(self.family).layers(self, arch, self.num_classes if num_classes is None else num_classes)

    def macs(self, arch: ArchConfig) -> int:
        return network_macs(self.layers(arch))

    def params(self, arch: ArchConfig) -> int:
        return network_params(self.layers(arch))

    def describe(self) -> dict[str, Any]:
        small, large = self.smallest(), self.largest()
        return {
            "name": self.name,
            "family": self.family,
            "subnets": self.num_subnets(),
            "resolutions": len(self.resolutions),
            "genes": self.num_genes,
            "macs_min": self.macs(small),
            "macs_max": self.macs(large),
            "fingerprint": self.fingerprint,
        }

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_yaml(cls, path: str | Path, *, width_mult: float | None = None) -> SearchSpace:
        raw = read_yaml(path, SpaceError, "search space")
        return cls.from_dict(raw, source=str(path), width_mult=width_mult)

    @classmethod
    def from_dict(
        cls, raw: Any, *, source: str = "<memory>", width_mult: float | None = None
    ) -> SearchSpace:
        from nasforge.families import get_family

        check = FieldChecker(source)
        if not isinstance(raw, dict):
            raise SpaceError(f"{source}: a search space must be a YAML mapping")
        name = check.string(raw, "name")
        family_name = check.string(raw, "family")
        try:
            family = get_family(family_name)
        except KeyError:
            from nasforge.families import FAMILIES

            raise SpaceError(
                f"{source}: field 'family': expected one of {sorted(FAMILIES)}, got {family_name!r}"
            ) from None
        resolutions = check.resolutions(raw, "resolutions")
        num_classes = check.positive_int(raw, "num_classes", default=1000)
        parsed = family.parse(raw, source)
        options = tuple(parsed.build.get("width_mult_options", (1.0,)))
        wm = options[0] if width_mult is None else float(width_mult)
        if wm not in options:
            raise SpaceError(f"{source}: width multiplier {wm} not offered; expected one of {list(options)}")
        return cls(
            name,
            family_name,
            resolutions,
            parsed,
            num_classes=num_classes,
            width_mult=wm,
            description=str(raw.get("description", "")),
            raw=raw,
            source=source,
        )


def _with_res(arch: ArchConfig, resolution: int) -> ArchConfig:
    return ArchConfig(resolution, arch.depths, arch.kernel_sizes, arch.expand_ratios, arch.width_mults)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _short_list(values: Sequence[int]) -> str:
    if len(values) > 6:
        return f"{values[0]}..{values[-1]} ({len(values)} values)"
    return str(list(values))


class FieldChecker:
    """Reads typed fields from a YAML mapping; errors name the file, the field and what was expected."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, expected: str, got: Any) -> SpaceError:
        return SpaceError(f"{self.source}: field '{field}': expected {expected}, got {got!r}")

    def mapping(self, raw: dict[str, Any], key: str, prefix: str = "", default: Any = None) -> dict[str, Any]:
        value = raw.get(key, default)
        if not isinstance(value, dict):
            raise self.fail(prefix + key, "a mapping", value)
        return value

    def string(self, raw: dict[str, Any], key: str, prefix: str = "") -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(prefix + key, "a non-empty string", value)
        return value

    def positive_int(self, raw: dict[str, Any], key: str, prefix: str = "", default: int | None = None) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(prefix + key, "a positive integer", value)
        return value

    def choice(self, raw: dict[str, Any], key: str, options: Sequence[str], prefix: str = "", default: str | None = None) -> str:
        value = raw.get(key, default)
        if value not in options:
            raise self.fail(prefix + key, f"one of {list(options)}", value)
        return str(value)

    def boolean(self, raw: dict[str, Any], key: str, prefix: str = "", default: bool = False) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(prefix + key, "true or false", value)
        return value

    def int_list(self, raw: dict[str, Any], key: str, prefix: str = "", minimum: int = 1) -> tuple[int, ...]:
        value = raw.get(key)
        if (
            not isinstance(value, list)
            or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value)
        ):
            raise self.fail(prefix + key, f"a non-empty list of integers >= {minimum}", value)
        if len(set(value)) != len(value):
            raise self.fail(prefix + key, "distinct values", value)
        return tuple(sorted(value))

    def number_list(self, raw: dict[str, Any], key: str, prefix: str = "") -> tuple[float, ...]:
        value = raw.get(key)
        if (
            not isinstance(value, list)
            or not value
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in value)
        ):
            raise self.fail(prefix + key, "a non-empty list of positive numbers", value)
        if len(set(value)) != len(value):
            raise self.fail(prefix + key, "distinct values", value)
        return tuple(sorted(float(v) for v in value))

    def resolutions(self, raw: dict[str, Any], key: str) -> tuple[int, ...]:
        value = raw.get(key)
        if isinstance(value, dict):
            try:
                lo, hi, step = int(value["min"]), int(value["max"]), int(value.get("step", 1))
            except (KeyError, TypeError, ValueError):
                raise self.fail(key, "a list of sizes or {min, max, step}", value) from None
            if lo <= 0 or hi < lo or step <= 0:
                raise self.fail(key, "0 < min <= max and step > 0", value)
            return tuple(range(lo, hi + 1, step))
        return self.int_list(raw, key, minimum=8)


def list_spaces(directory: Path = SPACES_DIR) -> list[str]:
    """Names of the shipped search spaces."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_space(name_or_path: str | Path, *, width_mult: float | None = None) -> SearchSpace:
    """Load a shipped space by name (``mobilenetv3-ofa``) or any space YAML by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise SpaceError(f"{path}: search space file not found")
        return SearchSpace.from_yaml(path, width_mult=width_mult)
    shipped = SPACES_DIR / f"{text}.yaml"
    if not shipped.exists():
        raise SpaceError(f"unknown search space {text!r}; shipped spaces: {', '.join(list_spaces())}")
    return SearchSpace.from_yaml(shipped, width_mult=width_mult)
