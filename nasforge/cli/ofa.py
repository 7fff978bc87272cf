"""`nasforge import-ofa` and `nasforge import`: Once-for-All's published files or a timm ViT checkpoint as a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nasforge.cli import app
from nasforge.cli._common import ResultTable, console
from nasforge.errors import ConfigError


def _image_sizes(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--image-sizes must be a comma list of integers, got {text!r}") from None
    if not sizes or min(sizes) <= 0 or len(set(sizes)) != len(sizes):
        raise ConfigError(f"--image-sizes must list distinct positive sizes, got {text!r}")
    return sizes


@app.command("import-ofa")
def import_ofa_command(
    checkpoint: Annotated[
        Optional[Path], typer.Argument(help="OFA supernet checkpoint (e.g. ofa_mbv3_d234_e346_k357_w1.2).")
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder to write.")] = None,
    net: Annotated[
        Optional[str], typer.Option("--net", help="Which published OFA net (default: recognised from the shapes).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a run already in --out.")] = False,
    predictor: Annotated[
        Optional[Path], typer.Option("--predictor", help="OFA's accuracy predictor file (with --run).")
    ] = None,
    run: Annotated[
        Optional[Path], typer.Option("--run", help="The imported run the predictor belongs to (with --predictor).")
    ] = None,
    image_sizes: Annotated[
        Optional[str],
        typer.Option("--image-sizes", help="Resolutions OFA's predictor encodes, e.g. 128,160,192,224 (ofa.nas form)."),
    ] = None,
) -> None:
    """Import Once-for-All's published supernet (CHECKPOINT --out RUN) or accuracy predictor (--predictor --run).

    The run folder is what every later stage takes: search (with the imported predictor), evaluate and export
    (with --data-dir DIR, an ImageFolder, or export --bn stored), train-supernet --init RUN (a new dataset).
    """
    if predictor is not None:
        if checkpoint is not None or out is not None or net is not None:
            raise ConfigError("--predictor FILE --run RUN imports a predictor; give the checkpoint in another call")
        if run is None:
            raise ConfigError("--predictor needs --run RUN (the imported run it predicts)")
        _import_predictor(predictor, run, _image_sizes(image_sizes))
        return
    if checkpoint is None or out is None:
        raise ConfigError("give CHECKPOINT --out RUN_DIR (a supernet) or --predictor FILE --run RUN (a predictor)")
    if run is not None or image_sizes is not None:
        raise ConfigError("--run and --image-sizes go with --predictor")
    from nasforge.foreign.ofa_runs import import_ofa_checkpoint

    result = import_ofa_checkpoint(checkpoint, out, net=net, force=force)
    table = ResultTable(title=f"imported {checkpoint}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("OFA net", f"{result.net.name} ({result.net.ofa_class}, {result.tensors} tensors)")
    table.add_row("nasforge space", f"{result.space.name} (width {result.space.width_mult:g}, "
                                    f"fingerprint {result.space.fingerprint})")
    table.add_row("run folder", str(result.run_dir))
    table.add_row("source sha256", result.sha256)
    console.print(table)
    console.print(f"next: nasforge import-ofa --predictor FILE --run {result.run_dir}; evaluate / export with "
                  "--data-dir DIR (an ImageFolder) or export --bn stored")


def _import_predictor(path: Path, run: Path, image_sizes: tuple[int, ...] | None) -> None:
    from nasforge.foreign.ofa_runs import import_ofa_predictor

    result = import_ofa_predictor(path, run, image_sizes=image_sizes)
    table = ResultTable(title=f"imported {path}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("predictor", f"{result.path} (kind ofa-mlp, OFA's {result.form} form)")
    if result.image_sizes:
        table.add_row("resolutions encoded", ", ".join(map(str, result.image_sizes)))
    if result.nearest:
        table.add_row("other resolutions", f"{len(result.nearest)} predicted as the nearest encoded one")
    console.print(table)


@app.command("import")
def import_command(
    model_name: Annotated[str, typer.Argument(help="timm model name (e.g. vit_tiny_patch16_224), built offline.")],
    source: Annotated[str, typer.Option("--from", help="Which project the weights come from: timm.")] = "timm",
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Local weights (.pth or .safetensors).")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="The vit space (name or YAML).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run folder to write.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a run already in --out.")] = False,
) -> None:
    """Import a local timm ViT checkpoint (--from timm MODEL --weights FILE --space SPACE --out RUN) as a run.

    Every tensor is checked against timm's MODEL and the space's largest network; Once-for-All files: import-ofa.
    """
    if source != "timm":
        raise ConfigError(f"--from {source!r}: this command imports from timm (Once-for-All: nasforge import-ofa)")
    if weights is None or space is None or out is None:
        raise ConfigError("give MODEL --weights FILE --space SPACE --out RUN_DIR")
    from nasforge.foreign.timm_runs import import_timm_checkpoint

    result = import_timm_checkpoint(model_name, weights, space, out, force=force)
    table = ResultTable(title=f"imported {weights}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("timm model", f"{result.model_name} ({result.tensors} tensors)")
    table.add_row("nasforge space", f"{result.space.name} (fingerprint {result.space.fingerprint})")
    table.add_row("run folder", str(result.run_dir))
    table.add_row("source sha256", result.sha256)
    console.print(table)
