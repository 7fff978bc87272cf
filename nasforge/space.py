"""`SearchSpace`: a space built once from YAML; the only object that knows the encoding.

The family declares its gene groups (`Family.gene_groups`, `nasforge.genes`) and the genes of a space
(`Family.genes`); the space is generic over them. The encoding holds the groups in the family's order:
resolution first, one depth gene per stage, then any number of block, stage and global groups (the conv
families: kernel slots, expand slots, width slots). A block slot belongs to one block position of one stage
and is *active* only while that stage's depth reaches it. Inactive slots are 0 in an `ArchConfig` and gene 0
in an encoding, so `decode(encode(a)) == a`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.arch_forms import parse_foreign, write_foreign
from nasforge.config import load_dataclass
from nasforge.errors import ArchError, SpaceError
from nasforge.families.base import FAMILIES, Family, PlacedLayer, StageSpec
from nasforge.genes import BlockGenes, Gene, GeneGroup
from nasforge.io import read_yaml
from nasforge.layers import LayerSpec, network_macs, network_params
from nasforge.resources import shipped_dir

SPACES_DIR = shipped_dir("search_spaces")


BlockChoice = BlockGenes  # the values of one active block (older name)


class SearchSpace:
    """An elastic search space: sampling, encoding, validation and the static layer list of any arch."""

    def __init__(
        self,
        name: str,
        family: Family,
        resolutions: Sequence[int],
        config: Any,
        *,
        num_classes: int,
        width_mult: float = 1.0,
        description: str = "",
        raw: dict[str, Any] | None = None,
        source: str = "<memory>",
    ) -> None:
        parsed = family.parse(config)
        self.name = name
        self.family = family
        self.description = description
        self.source = source
        self.config = config
        self.resolutions = tuple(int(r) for r in resolutions)
        self.stages: tuple[StageSpec, ...] = parsed.stages
        self.width_mult_options = parsed.width_mult_options
        self.groups: tuple[GeneGroup, ...] = tuple(family.gene_groups)
        self.num_classes = int(num_classes)
        self.width_mult = float(width_mult)
        self._raw = raw or {}
        self.genes: tuple[Gene, ...] = family.genes(parsed, self.resolutions)
        self._index_genes()

    def _index_genes(self) -> None:
        genes, groups = self.genes, self.groups
        names = [g.name for g in groups]
        if names[:2] != ["resolution", "depth"] or len(set(names)) != len(names):
            raise SpaceError(f"{self.source}: family {self.family.name!r} must declare its gene groups once each, "
                             f"resolution and depth first; got {names}")
        order = [names.index(g.group) if g.group in names else -1 for g in genes]
        if -1 in order or order != sorted(order) or order.count(0) != 1:
            raise SpaceError(f"{self.source}: family {self.family.name!r} declares genes outside the order of its "
                             f"gene groups {names}")
        self._slices = {}
        for i, group in enumerate(groups):
            idx = [j for j, o in enumerate(order) if o == i]
            self._slices[group.name] = slice(idx[0], idx[-1] + 1) if idx else slice(len(genes), len(genes))
        if len(self.genes_of("depth")) != len(self.stages):
            raise SpaceError(f"{self.source}: family {self.family.name!r} must declare one depth gene per stage")
        self._slot_of = {(g.group, g.stage, g.position): j for group in groups
                         for j, g in enumerate(self.genes_of(group.name)) if g.gated}
        self._choices = [g.choices for g in genes]
        self.gene_sizes = np.array([len(c) for c in self._choices], dtype=np.int64)
        width = int(self.gene_sizes.max())
        self._values = np.zeros((len(genes), width))
        for g, choices in enumerate(self._choices):
            self._values[g, : len(choices)] = choices
        slot_genes = [i for i, g in enumerate(genes) if g.gated]
        self._slot_genes = np.array(slot_genes, dtype=np.int64)
        self._slot_stage = np.array([genes[i].stage for i in slot_genes], dtype=np.int64)
        self._slot_pos = np.array([genes[i].position for i in slot_genes], dtype=np.int64)
        self._feature_genes = np.array([g for g in range(len(genes)) if self.gene_sizes[g] > 1], dtype=np.int64)
        sizes = self.gene_sizes[self._feature_genes]
        self._feature_offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.num_features = int(sizes.sum())

    def genes_of(self, group: str) -> tuple[Gene, ...]:
        """The genes of one group, in encoding order (none when the family has no such group)."""
        where = self._slices.get(group)
        return self.genes[where] if where is not None else ()

    def group(self, name: str) -> GeneGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise SpaceError(f"space '{self.name}' has no gene group {name!r}; "
                         f"its groups are {[g.name for g in self.groups]}")

    @property
    def kernel_slots(self) -> tuple[Gene, ...]:
        return self.genes_of("kernel")

    @property
    def expand_slots(self) -> tuple[Gene, ...]:
        return self.genes_of("expand")

    @property
    def width_choices(self) -> tuple[tuple[float, ...], ...]:
        """The multipliers of each width slot (the conv families' `width` group)."""
        return tuple(g.choices for g in self.genes_of("width"))

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
        return f"SearchSpace({self.name!r}, family={self.family.name!r}, genes={self.num_genes})"

    @property
    def num_genes(self) -> int:
        return len(self.genes)

    @property
    def gene_names(self) -> list[str]:
        return [g.name for g in self.genes]

    @property
    def gene_choices(self) -> tuple[tuple[float, ...], ...]:
        """The values each gene indexes (as floats)."""
        return tuple(self._choices)

    @property
    def gene_groups(self) -> dict[str, np.ndarray]:
        """Gene indices of each of the space's groups (e.g. resolution, depth, kernel, expand, width)."""
        return {g: np.arange(s.start, s.stop) for g, s in self._slices.items()}

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
        wm = self.width_mult if width_mult is None else float(width_mult)
        if wm not in self.width_mult_options:
            raise SpaceError(f"{self.name}: width multiplier {wm} not offered; "
                             f"expected one of {list(self.width_mult_options)}")
        return SearchSpace(
            self.name, self.family, self.resolutions, self.config,
            num_classes=self.num_classes if num_classes is None else num_classes, width_mult=wm,
            description=self.description, raw=self._raw, source=self.source,
        )

    # ------------------------------------------------------------------ counting
    def num_subnets(self, include_resolution: bool = False) -> int:
        """Distinct subnets (canonical archs); resolution multiplies in on request."""
        total = 1
        for s, stage in enumerate(self.stages):
            per_depth, prefix = 0, 1
            for d in range(stage.max_depth + 1):
                if d in stage.depths:
                    per_depth += prefix
                prefix *= self._block_variants(s, d)
            total *= per_depth
        for gene in self.genes:
            if gene.stage is None and gene.group != "resolution":
                total *= len(gene.choices)
            elif gene.stage is not None and not gene.gated and gene.group != "depth":
                total *= len(gene.choices)
        if include_resolution:
            total *= len(self.resolutions)
        return total

    def _block_variants(self, stage: int, position: int) -> int:
        """How many distinct value combinations block `position` of `stage` has."""
        n = 1
        for group in self.groups:
            slot = self._slot_of.get((group.name, stage, position))
            if slot is not None:
                n *= len(self.genes_of(group.name)[slot].choices)
        return n

    # ------------------------------------------------------------------ validation
    def validate(self, arch: ArchConfig) -> ArchConfig:
        """Check an arch against the space and return its canonical form (inactive slots 0)."""
        unknown = sorted(set(arch.fields) - {g.field for g in self.groups})
        if unknown:
            raise ArchError(f"unknown arch field(s) {unknown}; space '{self.name}' has "
                            f"{[g.field for g in self.groups]}")
        if arch.resolution not in self.resolutions:
            raise ArchError(
                f"resolution {arch.resolution} is not in space '{self.name}' "
                f"(expected one of {_short_list(self.resolutions)})"
            )
        for group in self.groups[1:]:
            self._check_len(group.field, arch.get(group.field), len(self.genes_of(group.name)))
        for group in self.groups[1:]:
            for j, (v, gene) in enumerate(zip(arch.get(group.field), self.genes_of(group.name))):
                if v in gene.choices or (v == 0 and gene.gated and arch.depths[gene.stage] <= gene.position):
                    continue
                raise ArchError(self._not_a_choice(group.field, j, v, gene))
        return self._mask(arch)

    def _not_a_choice(self, field: str, j: int, v: float, gene: Gene) -> str:
        if gene.gated:
            return (f"{field}[{j}] = {_fmt(v)} is not in space '{self.name}' "
                    f"(expected one of {', '.join(_fmt(c) for c in gene.choices)})")
        if gene.stage is not None:
            return f"{field}[{j}] = {_fmt(v)} is not a choice of stage '{self.stages[gene.stage].name}' " \
                   f"{[int(c) if float(c).is_integer() else c for c in gene.choices]}"
        return f"{field}[{j}] = {_fmt(v)} is not one of {[_fmt(c) for c in gene.choices]}"

    canonical = validate

    def _check_len(self, name: str, values: Sequence[Any], expected: int) -> None:
        if len(values) != expected:
            raise ArchError(f"'{name}' has {len(values)} entries; space '{self.name}' expects {expected}")

    def _mask(self, arch: ArchConfig) -> ArchConfig:
        values: dict[str, tuple[int | float, ...]] = {}
        for group in self.groups[1:]:
            values[group.field] = tuple(
                group.convert(0 if g.gated and arch.depths[g.stage] <= g.position else v)  # type: ignore[index]
                for v, g in zip(arch.get(group.field), self.genes_of(group.name))
            )
        return ArchConfig(arch.resolution, values=values)

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    def block_choices(self, arch: ArchConfig) -> list[list[BlockGenes]]:
        """Per stage, the values of each active block by group (a stage's fixed values filled in): the one
        place with slot arithmetic."""
        block_groups = [g for g in self.groups if g.scope == "block"]
        out = []
        for s, (stage, depth) in enumerate(zip(self.stages, arch.depths)):
            blocks = []
            for p in range(depth):
                values = []
                for group in block_groups:
                    slot = self._slot_of.get((group.name, s, p))
                    if slot is not None:
                        values.append((group.name, group.convert(arch.get(group.field)[slot])))
                    elif stage.choices(group.name):
                        values.append((group.name, group.convert(stage.choices(group.name)[0])))
                blocks.append(BlockGenes(tuple(values)))
            out.append(blocks)
        return out

    # ------------------------------------------------------------------ parsing archs
    def parse_arch(self, data: Any) -> ArchConfig:
        """Accept nasforge's JSON form or a registered foreign form (`nasforge.arch_forms`, e.g. OFA's)."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ArchError(f"arch is not valid JSON: {exc.msg} at position {exc.pos}") from None
        if isinstance(data, dict) and "arch" in data and isinstance(data["arch"], dict):
            data = data["arch"]  # an entry of pareto.json or a sample line
        if isinstance(data, dict):
            foreign = parse_foreign(self, data)
            if foreign is not None:
                return foreign
        return self.validate(ArchConfig.from_dict(data))

    def foreign_forms(self, arch: ArchConfig) -> dict[str, dict[str, Any]]:
        """`arch` in every other project's registered form this space has (e.g. {"ofa": {...}})."""
        return write_foreign(self, self.validate(arch))

    # ------------------------------------------------------------------ encoding
    def encode(self, arch: ArchConfig) -> np.ndarray:
        """Fixed-length integer vector: the index of each gene's value among its choices (0 when inactive)."""
        arch = self.validate(arch)
        out = np.zeros(self.num_genes, dtype=np.int64)
        for g, v in enumerate(self._arch_values(arch)):
            if v == 0 and self.genes[g].gated:
                continue  # inactive slot
            out[g] = self._choices[g].index(float(v))
        return out

    def encode_batch(self, archs: Iterable[ArchConfig]) -> np.ndarray:
        rows = [self.encode(a) for a in archs]
        return np.stack(rows) if rows else np.zeros((0, self.num_genes), dtype=np.int64)

    def _arch_values(self, arch: ArchConfig) -> list[float]:
        values: list[float] = [float(arch.resolution)]
        for group in self.groups[1:]:
            values.extend(map(float, arch.get(group.field)))
        return values

    def decode(self, genes: Sequence[int] | np.ndarray) -> ArchConfig:
        """Inverse of `encode`; inactive slot genes are ignored, so any in-bounds vector decodes."""
        vec = np.asarray(genes)
        if vec.shape != (self.num_genes,):
            raise ArchError(f"an encoding of space '{self.name}' has {self.num_genes} genes, got shape {vec.shape}")
        return self.decode_batch(vec[None, :])[0]

    def decode_batch(self, genes: np.ndarray) -> list[ArchConfig]:
        """Vectorised decode of a batch of encodings (inactive slots come out as 0)."""
        genes = np.atleast_2d(np.asarray(genes))
        if genes.ndim != 2 or genes.shape[1] != self.num_genes:
            raise ArchError(f"an encoding of space '{self.name}' has {self.num_genes} genes, got shape {genes.shape}")
        bad = (genes < 0) | (genes >= self.gene_sizes[None, :])
        if bad.any():
            row, g = (int(v[0]) for v in np.nonzero(bad))
            raise ArchError(f"gene {self.genes[g].name} = {genes[row, g]} is out of range 0..{self.gene_sizes[g] - 1}")
        genes = genes.astype(np.int64)
        vals = self._values[np.arange(self.num_genes)[None, :], genes]
        vals = np.where(self.active_mask(genes), vals, 0.0)
        fields = [(g.field, self._slices[g.name]) for g in self.groups[1:]]
        return [ArchConfig(int(row[0]), values=[(f, row[where]) for f, where in fields]) for row in vals.tolist()]

    def canonical_genes(self, genes: np.ndarray) -> np.ndarray:
        """Zero the genes of skipped blocks, so one network has one encoding."""
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        return np.where(self.active_mask(genes), genes, 0)

    def depth_values(self, genes: np.ndarray) -> np.ndarray:
        """(n, stages) depths of a batch of encodings."""
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        d = self._slices["depth"]
        return self._values[np.arange(d.start, d.stop)[None, :], genes[:, d]].astype(np.int64)

    def active_mask(self, genes: np.ndarray) -> np.ndarray:
        """For a batch of encodings, which genes matter (slot genes of skipped blocks do not)."""
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        mask = np.ones(genes.shape, dtype=bool)
        if len(self._slot_genes):
            depth = self.depth_values(genes)
            mask[:, self._slot_genes] = depth[:, self._slot_stage] > self._slot_pos[None, :]
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
        arch = self.decode(self.gene_sizes - 1)
        return arch if resolution is None else self.validate(arch.with_resolution(resolution))

    def smallest(self, resolution: int | None = None) -> ArchConfig:
        arch = self.decode(np.zeros(self.num_genes, dtype=np.int64))
        return arch if resolution is None else self.validate(arch.with_resolution(resolution))

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

    def mutate_genes(self, genes: np.ndarray, rng: np.random.Generator, prob: float = 0.1) -> np.ndarray:
        """Each row of `genes` with each gene resampled with probability `prob` (OFA's evolution mutation).

        The one mutation of the encoding: the evolution engine breeds through it.
        """
        genes = np.atleast_2d(np.asarray(genes, dtype=np.int64))
        flip = rng.random(genes.shape) < prob
        return np.where(flip, self.sample_genes(rng, len(genes)), genes)

    def crossover_genes(self, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Uniform crossover of the rows of `a` with those of `b`: each gene from either parent with equal chance."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        return np.where(rng.random(a.shape) < 0.5, a, b)

    # ------------------------------------------------------------------ layers and cost
    def plan(self, arch: ArchConfig, num_classes: int | None = None) -> list[PlacedLayer]:
        """The static layers of `arch`, each with the elastic block (stage, position) it realises."""
        arch = self.validate(arch)
        return self.family.plan(self, arch, self.num_classes if num_classes is None else num_classes)

    def layers(self, arch: ArchConfig, num_classes: int | None = None) -> list[LayerSpec]:
        """The static blocks of `arch` (stem to classifier) with their input shapes."""
        return [p.spec for p in self.plan(arch, num_classes)]

    def macs(self, arch: ArchConfig) -> int:
        return network_macs(self.layers(arch))

    def params(self, arch: ArchConfig) -> int:
        return network_params(self.layers(arch))

    @property
    def dropout(self) -> float:
        return self.family.dropout(self)

    @property
    def bn_eps(self) -> float:
        """The epsilon of every BatchNorm in this space's networks (the YAML's `bn_eps`, PyTorch's 1e-5 by default)."""
        return float(getattr(self.config, "bn_eps", 1e-5))

    def describe(self) -> dict[str, Any]:
        small, large = self.smallest(), self.largest()
        return {
            "name": self.name,
            "family": self.family.name,
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
    def from_dict(cls, raw: Any, *, source: str = "<memory>", width_mult: float | None = None) -> SearchSpace:
        if not isinstance(raw, dict):
            raise SpaceError(f"{source}: a search space must be a YAML mapping")
        name = raw.get("family")
        if not isinstance(name, str) or name not in FAMILIES:
            raise SpaceError(f"{source}: field 'family': expected one of {list(FAMILIES.names())}, got {name!r}")
        family = FAMILIES.get(name)()
        typed = load_dataclass(family.schema, family.prepare_yaml(raw), source=source, error=SpaceError)
        options = family.parse(typed).width_mult_options
        wm = options[0] if width_mult is None else float(width_mult)
        if wm not in options:
            raise SpaceError(f"{source}: width multiplier {wm} not offered; expected one of {list(options)}")
        return cls(
            typed.name, family, typed.resolution_list, typed, num_classes=typed.num_classes, width_mult=wm,
            description=typed.description, raw=raw, source=source,
        )


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _short_list(values: Sequence[int]) -> str:
    if len(values) > 6:
        return f"{values[0]}..{values[-1]} ({len(values)} values)"
    return str(list(values))


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
