"""`nasforge targets | profile | latency | lut import`: hardware targets and latency lookup tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import ArchOpt, JsonOpt, ResultTable, SeedOpt, SpaceOpt, console, err_console, print_json
from nasforge.cli.progress import progress_bar
from nasforge.errors import ConfigError, NasforgeError
from nasforge.io import check_output_file

if TYPE_CHECKING:
    from nasforge.latency.lut import LatencyTable
    from nasforge.latency.records import Validation

TargetOpt = Annotated[str, typer.Option("--target", help="Target name (configs/targets) or a target YAML path.")]
LutOpt = Annotated[Optional[Path], typer.Option("--lut", help="A latency table to use instead of the shipped one.")]

lut_app = typer.Typer(help="Manage latency lookup tables.", no_args_is_help=True)
app.add_typer(lut_app, name="lut")


def _fmt_validation(lut: LatencyTable) -> str:
    v = lut.validation
    if v is None:
        if lut.validation_rejected is not None:
            return "uncalibrated block sums (whole-net validation rejected: machine too noisy)"
        if lut.validation_under_load:
            return "uncalibrated block sums (whole-net validation under load discarded, see BENCHMARKS.md)"
        return "not validated"
    c = v.headline
    return f"MAPE {c.mape:.1f}%, {c.within_10pct * 100:.0f}% within 10%, tau {c.kendall_tau:.2f} (n={v.n})"


@app.command("targets")
def targets_command(as_json: JsonOpt = False) -> None:
    """List hardware targets, their specs and the measured latency tables shipped for them."""
    from nasforge.latency.lut import LatencyTable, table_dirs
    from nasforge.latency.targets import list_targets, load_target

    tables: dict[str, list[LatencyTable]] = {}
    for folder in table_dirs():  # the user folder's tables, then the shipped examples
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                lut = LatencyTable.peek(path)
            except NasforgeError:  # not a JSON table with metadata: not listed
                continue
            tables.setdefault(lut.target, []).append(lut)
    if as_json:
        print_json([
            {**{k: v for k, v in load_target(name).__dict__.items() if k != "calibration"},
             "tables": [{"space": m.metadata.get("space"), "file": m.path, "device": m.metadata.get("device"),
                         "validation": None if m.validation is None else m.validation.to_dict()}
                        for m in tables.get(name, [])]}
            for name in list_targets()
        ])
        return
    table = ResultTable(title="nasforge hardware targets")
    for col in (
        "target",
        "provider",
        "threads",
        "batch",
        "peak GFLOP/s",
        "GB/s",
        "eff.",
        "measured tables (validation, calibrated 5-fold CV)",
    ):
        table.add_column(col)
    for name in list_targets():
        t = load_target(name)
        luts = tables.get(name, [])
        lut_text = "\n".join(
            f"{m.metadata.get('space')}: {_fmt_validation(m)} [{m.metadata.get('device', '?')}; {m.path}]" for m in luts
        )
        table.add_row(
            name,
            t.provider.replace("ExecutionProvider", ""),
            str(t.threads),
            str(t.batch),
            f"{t.peak_flops / 1e9:.0f}",
            f"{t.bandwidth / 1e9:.1f}",
            f"{t.efficiency:.2f}",
            lut_text or "none (roofline estimate)",
        )
    console.print(table)


def _read_archs(path: Path, space: Any, k: int) -> list[Any]:
    from nasforge.io import arch_entries

    if not path.is_file():
        raise ConfigError(f"--verify {path}: file not found")
    entries = arch_entries(path.read_text(), path)
    return [space.parse_arch(e) for e in entries[:k]]


@app.command("profile")
def profile_command(
    target: TargetOpt,
    space: SpaceOpt,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="LUT file (default: $NASFORGE_HOME/latency/TARGET__SPACE__MACHINE.json, ~/.cache/nasforge "
            "without NASFORGE_HOME); re-running resumes it.",
        ),
    ] = None,
    validate: Annotated[
        Optional[int],
        typer.Option(
            "--validate",
            help="Whole subnets to measure for the noise verdict, the calibration and its 5-fold CV "
            "(default 40, nasforge.latency.profiler.DEFAULT_VALIDATE, unless the table is calibrated already; "
            "0: none).",
        ),
    ] = None,
    bundle: Annotated[
        Optional[Path],
        typer.Option("--bundle", help="Write an on-device bundle (ONNX blocks + manifest) instead of timing here."),
    ] = None,
    verify: Annotated[
        Optional[Path],
        typer.Option(
            "--verify",
            help="With --bundle: a pareto.json/JSON-lines file whose top-K archs are timed whole on the device.",
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many archs of --verify to carry.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per model.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs after the first (engine-building) run.")] = 10,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="Intra-op threads (default: the target's).")
    ] = None,
    note: Annotated[
        Optional[str], typer.Option("--note", help="Free text stored in the LUT metadata (e.g. 'measured under load').")
    ] = None,
    seed: SeedOpt = 0,
) -> None:
    """Measure a latency lookup table for TARGET x SPACE on this machine (or write a bundle for the device)."""
    from nasforge.latency.targets import load_target
    from nasforge.space import load_space

    if repeats < 1 or warmup < 0 or (validate is not None and validate < 0) or top_k < 1:
        raise ConfigError("--repeats and --top-k must be >= 1, --warmup and --validate >= 0")
    t = load_target(target)
    s = load_space(space)
    if threads is not None:
        from dataclasses import replace

        t = replace(t, threads=threads)
    if bundle is not None:
        topk = _read_archs(verify, s, top_k) if verify else []
        _write_bundle(bundle, s, t, topk, validate, seed=seed, warmup=warmup, repeats=repeats)
        return
    if verify is not None:
        raise ConfigError("--verify needs --bundle (top-K subnets are timed on the device)")
    _profile_here(s, t, out, validate, threads=threads, warmup=warmup, repeats=repeats, note=note, seed=seed)


def _write_bundle(
    bundle: Path, s: Any, t: Any, topk: list[Any], validate: int | None, *, seed: int, warmup: int, repeats: int
) -> None:
    """`profile --bundle`: export the blocks (and whole subnets) for timing on a device that lacks nasforge."""
    from nasforge.latency.bundle import write_bundle
    from nasforge.latency.enumerate import distinct_layers
    from nasforge.latency.profiler import DEFAULT_VALIDATE

    n_val = DEFAULT_VALIDATE if validate is None else validate
    n_models = len(distinct_layers(s)) + n_val + len(topk)
    with progress_bar(console, "exporting ONNX models", n_models, transient=True) as update:
        manifest = write_bundle(
            bundle, s, t, validate=n_val, topk=topk, seed=seed, warmup=warmup, repeats=repeats,
            on_progress=lambda done, total: update(completed=done),
        )
    console.print(
        f"wrote {bundle}: {len(manifest['blocks'])} blocks, {len(manifest['verify'])} whole subnets.\n"
        f"On the device: python {bundle.name} --out lut.json  (needs onnxruntime + numpy; the zip runs itself)\n"
        f"Back here: nasforge lut import lut.json --space {s.name}"
    )


def _profile_here(
    s: Any, t: Any, out: Path | None, validate: int | None, *, threads: int | None, warmup: int, repeats: int,
    note: str | None, seed: int,
) -> None:
    """`profile` on this machine: time every block (resumable), then whole subnets for the calibration."""
    from nasforge.latency.profiler import default_table_path, table_lock

    out = check_output_file(out or default_table_path(t, s))
    with table_lock(out):  # a second profile on this table fails at once, before timing anything
        _time_and_validate(s, t, out, validate, threads=threads, warmup=warmup, repeats=repeats, note=note, seed=seed)


def _time_and_validate(
    s: Any, t: Any, out: Path, validate: int | None, *, threads: int | None, warmup: int, repeats: int,
    note: str | None, seed: int,
) -> None:
    from nasforge.latency.enumerate import distinct_layers
    from nasforge.latency.profiler import Timer, build_table, validate_table, validation_size

    timer = Timer(t, threads, warmup, repeats)
    with progress_bar(console, "profiling blocks", len(distinct_layers(s))) as update:
        table = build_table(s, timer, out, note=note, on_progress=lambda done, total: update(completed=done))
    st = table.metadata.get("stability", {})
    console.print(
        f"{out}: {len(table.entries)} entries, {table.metadata['build_seconds']:.0f} s of profiling in total "
        f"({timer.provider}, {timer.threads} thread(s), {table.metadata['device']}); block timings: uncertainty "
        f"median {st.get('uncertainty_median', 0):.1%}, {st.get('blocks_retried', 0)} re-measured, "
        f"{st.get('blocks_unstable', 0)} still above {st.get('max_uncertainty', 0):.0%}, "
        f"{st.get('preempted_runs', 0):.1%} of runs preempted"
    )
    n = validation_size(table, validate)
    if n:
        with progress_bar(console, "measuring whole subnets", n) as update:
            result = validate_table(
                s, table, timer, n, seed=seed,
                on_progress=lambda done, total: update(completed=done, total=total),
            )
        _print_validation(result)
    elif validate is None:
        console.print("table already calibrated: no whole subnets measured (pass --validate N to measure again)")

def _print_validation(result: Validation) -> None:
    scored = result.n if result.n_scored is None else result.n_scored
    table = ResultTable(
        title=f"latency validation: {result.n} whole subnets, scored on {scored} random ones"
    )
    for col in ("prediction", "MAPE %", "within +-10%", "Kendall tau"):
        table.add_column(col)
    for label, m in (
        ("block sum (raw)", result.raw),
        ("calibrated, 5-fold CV", result.calibrated_cv5),
        ("calibrated, in-sample", result.calibrated_in_sample),
        ("old linear calibration, 5-fold CV", result.linear_sum_blocks_cv5),
    ):
        if m is not None:
            table.add_row(label, f"{m.mape:.2f}", f"{m.within_10pct * 100:.0f}%", f"{m.kendall_tau:.3f}")
    console.print(table)
    noise = result.noise
    if noise is not None and noise.repeat_n:
        console.print(
            f"repeatability: {noise.repeat_n} subnets measured twice differ by {noise.repeat_median_diff:.1%} "
            f"(median), {noise.repeat_max_diff:.1%} (max); {noise.preempted_runs:.0%} of whole-subnet runs "
            "were preempted by other processes (dropped)"
        )
    if not result.is_trusted:
        reason = noise.reason if noise is not None else "no reason recorded"
        typer.echo(
            f"warning: this machine was too noisy to trust the whole-subnet timings ({reason}): "
            "the calibration was NOT stored (kept as validation_rejected); re-run with --validate N when it is quieter",
            err=True,
        )


@app.command("latency")
def latency_command(
    target: TargetOpt, space: SpaceOpt, arch: ArchOpt, lut: LutOpt = None, as_json: JsonOpt = False
) -> None:
    """Print one arch's predicted latency and where it comes from (measured table or estimate)."""
    import warnings

    from nasforge.io import read_arch_argument
    from nasforge.latency.model import load_latency_model, prediction_label
    from nasforge.latency.model import profile_command as measure_cmd
    from nasforge.latency.targets import load_target
    from nasforge.space import load_space

    # resolved once, first: a bad target name fails before anything else (with --lut the table's target decides)
    spec = load_target(target) if lut is None else target
    s = load_space(space)
    a = s.parse_arch(read_arch_argument(arch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_latency_model(spec, s, lut)
    ms = float(model.predict([a])[0])
    table = model.table
    table_path = table.path if table is not None else ""
    if as_json:
        print_json({
            "arch": a.key, "space": s.name, "target": model.target, "latency_ms": ms, "source": model.source,
            "label": prediction_label(model),  # what latency_ms is: a prediction from a table, or an estimate
            "calibrated": model.calibrated,
            "table": (table.path or None) if table is not None else None,
            "measured_on": table.metadata.get("device") if table is not None else None,
        })
    if model.source == "estimated":
        _say(as_json, f"{ms:.3f} ms  (estimated: roofline from {model.target}'s datasheet specs, not a measurement)")
        typer.echo(
            f"warning: no measured table for {model.target} x {s.name}; measure one with "
            f"`{measure_cmd(model.target, s)}`",
            err=True,
        )
    elif model.source == "measured":
        how = "" if model.calibrated else (
            "; uncalibrated block sum: its whole-subnet validation was rejected as too noisy"
            if table is not None and table.validation_rejected is not None
            else "; uncalibrated block sum"
        )
        _say(as_json, f"{ms:.3f} ms  ({prediction_label(model)}, this machine: {table_path}{how})")
    else:
        _say(as_json, f"{ms:.3f} ms  ({prediction_label(model)}, not this machine: {table_path})")
        typer.echo(f"warning: measure this machine with `{measure_cmd(model.target, s)}`", err=True)


def _say(as_json: bool, line: str) -> None:
    """The human line on stdout, unless stdout carries the JSON."""
    if not as_json:
        typer.echo(line)

@lut_app.command("import")
def lut_import_command(
    path: Annotated[Path, typer.Argument(help="LUT JSON written on the device by `python bundle.zip --out lut.json`.")],
    space: SpaceOpt,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Where to store it (default: the user folder, $NASFORGE_HOME/latency/)."),
    ] = None,
) -> None:
    """Take in a LUT measured on a device: check it, calibrate on its validation subnets, report top-K picks."""
    from nasforge.latency.bundle import import_table
    from nasforge.latency.lut import LatencyTable, table_filename, user_tables_dir
    from nasforge.latency.model import table_target
    from nasforge.space import load_space

    s = load_space(space)
    lut = LatencyTable.load(path)  # read once, with its target, and handed to import_table
    spec = table_target(lut)
    local = spec is not None and spec.local
    name = table_filename(lut.target, s.name, lut.machine if local else None)
    dest = check_output_file(out or user_tables_dir() / name)
    table, report = import_table(lut, s, dest, spec)
    console.print(f"imported {len(table.entries)} entries measured on {table.metadata.get('device')} -> {dest}")
    if report.provider_warning:
        typer.echo(f"warning: {report.provider_warning}", err=True)
    if report.validation:
        _print_validation(report.validation)
    else:
        err_console.print(
            "warning: fewer than 5 validation subnets in this table: no calibration fitted (plain block sums)"
        )
    if report.topk:
        t = ResultTable(title="top-K subnets measured on the device")
        for col in ("arch", "measured ms", "table predicts ms", "search predicted ms"):
            t.add_column(col)
        for row in report.topk:
            sp = row.search_predicted_ms
            estimated = " (estimated)" if row.search_predicted_source == "estimated" else ""
            t.add_row(
                row.arch,
                f"{row.measured_ms:.3f}",
                f"{row.lut_predicted_ms:.3f}",
                "-" if sp is None else f"{sp:.3f}{estimated}",
            )
        console.print(t)
