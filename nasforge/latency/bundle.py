"""On-device profiling without torch: a zip of ONNX blocks + a manifest that times itself (`python bundle.zip`).

Bundle layout:
  manifest.json        target, provider, batch, protocol, space + fingerprint, blocks [{key, file, input_shape}],
                       verify [{key, role, arch, predicted_ms, file}]
  reference            {block: {key, file}, subnet: {key, arch, file}}: the speed reference timed in every
                       group (`nasforge.latency.reference`); the block is one of the blocks
  blocks/NNNNN.onnx    one model per distinct block of the space
  reference/subnet.onnx  the reference subnet
  verify/NNNNN.onnx    whole subnets: role "validation" (design points + random ones, to calibrate and
                       validate the table), "topk" (a search's picks, to check on the device that they
                       meet the constraint), "repeat" (a few validation subnets again, last: the noise verdict)
  ort_timing/*.py      the runner: the package nasforge.latency.ort_timing, copied (onnxruntime + numpy only)
  __main__.py          so the zip runs itself: `python bundle.zip --out lut.json`
`import_table` reads the runner's LUT back, fits the calibration on the validation subnets and
reports predicted vs measured for the top-K picks; like `nasforge profile`, it stores the calibration
only when the device's repeated timings agree (`nasforge.latency.profiler.noise_verdict`).
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.arch import ArchConfig
from nasforge.errors import LatencyError
from nasforge.latency import calibration as cal
from nasforge.latency import ort_timing
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable, at_one_speed
from nasforge.latency.model import TableFeatures, load_latency_model, table_target
from nasforge.latency.records import ImportReport, TopKCheck
from nasforge.latency.reference import reference_block, reference_subnet
from nasforge.latency.targets import Target
from nasforge.space import SearchSpace

RUNNER = Path(ort_timing.__file__).parent  # the package the bundle carries as its top-level `ort_timing`
# `python bundle.zip --out lut.json`: the zip is on sys.path, so its own runner imports from it
MAIN = """import sys

from ort_timing.runner import main

sys.exit(main([sys.argv[0], *sys.argv[1:]]))
"""


def runner_files() -> list[tuple[Path, str]]:
    """The runner's modules and their names in the zip (a package: Python imports it from the zip)."""
    return [(f, f"ort_timing/{f.name}") for f in sorted(RUNNER.glob("*.py"))]


def write_bundle(
    path: str | Path,
    space: SearchSpace,
    target: Target,
    *,
    validate: int = 0,
    topk: Sequence[ArchConfig] = (),
    seed: int = 0,
    warmup: int = 10,
    repeats: int = 50,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Export every block (and `validate` random + `topk` given whole subnets) into a bundle zip.

    The zip runs itself on the device: `python bundle.zip --out lut.json` (its `__main__.py` calls the
    runner, `ort_timing.runner`, from a copy of the package `nasforge.latency.ort_timing`; onnxruntime + numpy only).
    """
    path = Path(path)
    _check_destination(path)  # before minutes of ONNX exports
    specs = distinct_layers(space)
    subnets = _choose_verify(space, target, validate, topk, seed)
    manifest: dict[str, Any] = {
        "format": "nasforge-bundle/1", "target": target.name, "provider": target.provider, "batch": target.batch,
        "protocol": ort_timing.protocol(target.threads, warmup, repeats),
        "space": space.name, "space_fingerprint": space.fingerprint, "blocks": [], "verify": [],
    }
    advance = _Steps(len(specs) + len(subnets.validation) + len(subnets.topk) + 1, on_progress)

    def fill(zf: zipfile.ZipFile) -> None:
        _write_blocks(zf, specs, target, manifest, advance)
        _write_reference(zf, space, target, manifest)
        advance()
        _write_verify(zf, space, target, manifest, subnets, advance)
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
        for file, name in runner_files():
            zf.write(file, name)
        zf.writestr("__main__.py", MAIN)

    _write_zip(path, fill)
    return manifest


@dataclass(frozen=True)
class _Verify:
    """The whole subnets a bundle times: validation ones (design points first), repeats of its random ones,
    and the search's top-K with this machine's prediction for each."""

    validation: list[ArchConfig]
    designed: list[bool]
    n_repeat: int
    topk: list[ArchConfig]
    predicted: list[float | None]
    predicted_source: str | None


class _Steps:
    """Counts exported files and reports (done, total) to the caller's progress callback."""

    def __init__(self, total: int, on_progress: Callable[[int, int], None] | None) -> None:
        self.done, self.total, self.on_progress = 0, total, on_progress

    def __call__(self) -> None:
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def _choose_verify(
    space: SearchSpace, target: Target, validate: int, topk: Sequence[ArchConfig], seed: int
) -> _Verify:
    """Design points chosen on roofline features (no timings yet); the device measures them all."""
    from nasforge.latency.model import BlockFeatures, roofline_ms
    from nasforge.latency.profiler import choose_subnets, repeat_count

    guess = BlockFeatures(space, lambda spec: roofline_ms(spec, target), 0.0, target.batch)
    val_archs, designed = choose_subnets(space, guess, validate, np.random.default_rng(seed))
    n_repeat = repeat_count(int((~designed).sum()), len(val_archs)) if validate else 0
    checked = [space.validate(a) for a in topk]
    predicted, source = _topk_predictions(space, target, checked)
    return _Verify(val_archs, [bool(d) for d in designed], n_repeat, checked, predicted, source)


def _write_blocks(
    zf: zipfile.ZipFile, specs: Sequence[Any], target: Target, manifest: dict[str, Any], advance: _Steps
) -> None:
    from nasforge.latency.backends import block_input_shape, export_block

    for i, spec in enumerate(specs):
        name = f"blocks/{i:05d}.onnx"
        zf.writestr(name, export_block(spec, target.batch))
        shape = list(block_input_shape(spec, target.batch))
        manifest["blocks"].append({"key": spec.key, "file": name, "input_shape": shape})
        advance()


def _write_reference(zf: zipfile.ZipFile, space: SearchSpace, target: Target, manifest: dict[str, Any]) -> None:
    """The speed references: the reference block is one of the blocks; the reference subnet its own file."""
    from nasforge.latency.backends import export_subnet

    ref_block, ref_subnet = reference_block(space), reference_subnet(space)
    ref_file = "reference/subnet.onnx"
    manifest["reference"] = {
        "block": {"key": ref_block.key, "file": next(b["file"] for b in manifest["blocks"]
                                                       if b["key"] == ref_block.key)},
        "subnet": {"key": ref_subnet.key, "arch": ref_subnet.to_dict(), "file": ref_file},
    }
    zf.writestr(ref_file, export_subnet(space, ref_subnet, target.batch))


def _write_verify(
    zf: zipfile.ZipFile, space: SearchSpace, target: Target, manifest: dict[str, Any], subnets: _Verify,
    advance: _Steps,
) -> None:
    from nasforge.latency.backends import export_subnet

    roles = (("validation", subnets.validation, [None] * len(subnets.validation)),
             ("topk", subnets.topk, subnets.predicted))
    for role, archs, preds in roles:
        for i, (arch, pred) in enumerate(zip(archs, preds)):
            name = f"verify/{len(manifest['verify']):05d}.onnx"
            zf.writestr(name, export_subnet(space, arch, target.batch))
            manifest["verify"].append({
                "key": f"{role}:{arch.key}", "role": role, "arch": arch.to_dict(),
                "design": subnets.designed[i] if role == "validation" else False, "predicted_ms": pred,
                "predicted_source": subnets.predicted_source if role == "topk" else None, "file": name,
            })
            advance()
    randoms = [v for v in manifest["verify"] if v["role"] == "validation" and not v["design"]]
    for v in randoms[: subnets.n_repeat]:  # timed last, minutes after the first time: the noise verdict
        manifest["verify"].append({**v, "key": f"repeat:{v['key'].split(':', 1)[1]}", "role": "repeat"})


def _write_zip(path: Path, fill: Callable[[zipfile.ZipFile], None]) -> None:
    """Write the zip beside `path` and move it in place: never a partial bundle (Ctrl-C, full disk, export error)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            fill(zf)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise LatencyError(f"{path}: cannot write the bundle ({exc.strerror or exc})") from None
        raise


def _topk_predictions(
    space: SearchSpace, target: Target, topk: Sequence[ArchConfig]
) -> tuple[list[float | None], str | None]:
    """This machine's prediction for each top-K arch (and its source), for the device to check against."""
    if not topk:
        return [], None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load_latency_model(target, space)
        return [float(v) for v in model.predict(topk)], model.source  # "estimated": only the roofline
    except LatencyError:
        return [None] * len(topk), None


def _check_destination(path: Path) -> None:
    """A one-line error for a destination that cannot take a bundle file, before any work is done."""
    if path.is_dir():
        raise LatencyError(f"--bundle {path} is a directory; give a file name, e.g. {path / 'bundle.zip'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LatencyError(f"--bundle {path}: cannot create {path.parent} ({exc.strerror or exc})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise LatencyError(f"--bundle {path}: folder {path.parent} is not writable")


def import_table(
    lut: LatencyTable | str | Path, space: SearchSpace, dest: str | Path | None = None,
    target: Target | None = None,
) -> tuple[LatencyTable, ImportReport]:
    """Read a LUT written by the runner; calibrate on its validation subnets; report its top-K picks.

    `lut`: the file, or the table a caller loaded already together with its resolved `target` (`table_target`;
    None when the table's target does not resolve), so neither is read twice.
    Returns the table (saved to `dest` when given) and what was learned (`ImportReport`).
    """
    if isinstance(lut, LatencyTable):
        table, lut_path = lut, lut.path
    else:
        table, lut_path = LatencyTable.load(lut), str(lut)
        target = table_target(table)
    fp = table.metadata.get("space_fingerprint")
    if fp != space.fingerprint:
        raise LatencyError(
            f"{lut_path} was measured for space {table.metadata.get('space')!r} ({fp}), not {space.name!r}"
        )
    missing = [s.key for s in distinct_layers(space) if s.key not in table.entries]
    if missing:
        raise LatencyError(
            f"{lut_path} lacks {len(missing)} block(s) of {space.name!r}, e.g. {missing[0]!r}; "
            "re-run the runner to resume"
        )
    features = TableFeatures(table, space)
    validation = None
    val = [v for v in table.verify if v.get("role") == "validation"]
    if len(val) >= 5:
        from nasforge.latency.profiler import assess_validation

        archs = [space.parse_arch(v["arch"]) for v in val]
        index = {v["key"].split(":", 1)[1]: i for i, v in enumerate(val)}
        repeats = [v for v in table.verify if v.get("role") == "repeat" and v["key"].split(":", 1)[1] in index]
        validation = assess_validation(
            space,
            table,
            archs,
            np.array([bool(v.get("design", False)) for v in val]),
            val,
            np.array([index[v["key"].split(":", 1)[1]] for v in repeats], dtype=np.int64),
            repeats,
            reference=(table.metadata.get("speed_reference") or {}).get("subnet"),
        )
    subnet_speed = ort_timing.reference_speed(v for v in table.verify if v.get("role") in ("validation", "repeat"))
    topk = [v for v in table.verify if v.get("role") == "topk"]
    measured = at_one_speed(topk, subnet_speed, f"{lut_path} top-K subnets")
    checks: list[TopKCheck] = []
    for v, ms in zip(topk, measured):
        arch = space.parse_arch(v["arch"])
        predicted = float(cal.apply(table.calibration, features([arch]))[0])
        checks.append(TopKCheck(arch.key, float(ms), predicted, v.get("predicted_ms"), v.get("predicted_source")))
    if dest is not None:
        table.save(dest)
    return table, ImportReport(validation, checks, _provider_warning(table, target))


def _provider_warning(table: LatencyTable, target: Target | None) -> str | None:
    """Why the device's provider differs from the one its target asks for, or None."""
    wanted = target.provider if target is not None else None
    used = table.metadata.get("provider")
    if wanted and used and used != wanted:
        return (
            f"target {table.target!r} asks for {wanted} but the device ran {used} "
            f"(that provider was missing from its onnxruntime build); the table times {used}"
        )
    return None
