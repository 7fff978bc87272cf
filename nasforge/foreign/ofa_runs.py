"""Once-for-All's published files as nasforge run folders, and a run's supernet back in OFA's format.

    import_ofa_checkpoint("ofa_mbv3_d234_e346_k357_w1.2", "runs/ofa-mbv3")   # a run every later stage takes
    import_ofa_predictor("acc_predictor.pth", "runs/ofa-mbv3")               # RUN/predictor, kind ofa-mlp
    export_ofa_checkpoint(load_run("runs/ofa-mbv3"), "back.pth")               # {"state_dict": ...} for OFA

An imported run holds what a trained one does (`nasforge.train.runs`): config.yaml (the space, its width and
ImageNet's data settings), space.yaml, data.json (ImageNet normalisation, the evaluation protocol),
supernet.pt, plus import.json (the source file's sha256 and the net it is). It has no dataset: stages that
read images take --data-dir (an ImageFolder).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasforge.errors import CheckpointError, ConfigError
from nasforge.foreign.imported_run import IMAGENET_EVAL, check_import_destination, holds_run, write_imported_run
from nasforge.foreign.ofa import (
    PUBLISHED,
    OFANet,
    nasforge_to_ofa,
    ofa_to_nasforge,
    published_net,
    read_checkpoint,
    recognise,
)
from nasforge.io import atomic_write_bytes, atomic_write_json, check_output_dir, check_output_file
from nasforge.space import SearchSpace


@dataclass(frozen=True)
class ImportResult:
    run_dir: Path
    net: OFANet
    space: SearchSpace
    sha256: str
    tensors: int


def import_config(net: OFANet) -> Any:
    """The TrainConfig an imported run records: the space and width, ImageNet as an ImageFolder, streamed."""
    from nasforge.train.config import TrainConfig, apply_overrides

    return apply_overrides(TrainConfig(), {
        "space": net.space, "width_mult": net.width, "data.dataset": "imagefolder", "data.loader": "stream",
        "data.normalization": "imagenet",
    })


def import_ofa_checkpoint(path: str | Path, out: str | Path, *, net: str | None = None,
                          force: bool = False) -> ImportResult:
    """Write a run folder holding OFA's supernet `path` (recognised from its shapes, or the published `net`).

    CheckpointError (one line) names the first tensor that disagrees with the net; an `out` that holds a run is
    refused unless `force`.
    """
    path, out = Path(path), Path(out)
    if net is not None and net not in PUBLISHED:
        raise ConfigError(f"--net {net!r} is not a published OFA net; expected one of {list(PUBLISHED)}")
    check_import_destination(out, force)  # refused before reading 30 MB of weights
    ckpt = read_checkpoint(path)
    chosen = PUBLISHED[net] if net is not None else recognise(ckpt)
    space = chosen.load_space()
    state = ofa_to_nasforge(ckpt, space)  # every tensor of the supernet, checked: the first that disagrees is named
    cfg = import_config(chosen)
    sha = write_imported_run(out, space, cfg, state, source=path, dataset="imagenet", record={
        "project": "once-for-all", "net": chosen.name, "ofa_class": chosen.ofa_class, "width": chosen.width,
        "space": space.name, "space_fingerprint": space.fingerprint, "tensors": len(ckpt), "recognised": net is None,
    })
    return ImportResult(out, chosen, space, sha, len(ckpt))


@dataclass(frozen=True)
class PredictorImport:
    path: Path
    form: str
    image_sizes: tuple[int, ...]
    nearest: dict[int, int]  # space resolutions OFA's encoder does not list -> the listed one used for them


def import_ofa_predictor(path: str | Path, run_dir: str | Path, *,
                         image_sizes: Sequence[int] | None = None) -> PredictorImport:
    """OFA's accuracy predictor file as RUN/predictor (kind `ofa-mlp`), bound to the run's space and supernet."""
    from nasforge.foreign.ofa_predictor import (
        OFAAccuracyPredictor,
        OFAMLPPredictor,
        load_ofa_predictor_file,
        resolution_fallback,
    )
    from nasforge.predictors.base import RUN_PREDICTOR_DIR, predictor_metadata, save_predictor
    from nasforge.train.checkpoint import sha256_file
    from nasforge.train.runs import load_run

    check_output_dir(Path(run_dir) / RUN_PREDICTOR_DIR, "--run (its predictor/)")
    run = load_run(run_dir, device="cpu")
    record = run.import_record()
    if record is None:
        raise ConfigError(f"run {run.path} was not imported from Once-for-All (no import.json): OFA's accuracy "
                          "predictor predicts OFA's own supernets; import the supernet with `nasforge import-ofa`")
    ofa = OFAAccuracyPredictor.from_state_dict(load_ofa_predictor_file(path), run.space, image_sizes)
    predictor = OFAMLPPredictor.from_ofa(ofa)
    nearest = resolution_fallback(run.space, ofa.form, ofa.image_sizes)
    meta = predictor_metadata(
        run.space, checkpoint_sha256=run.checkpoint_sha256, dataset="imagenet",
        num_measurements=0, source=str(path), source_sha256=sha256_file(Path(path)), project="once-for-all",
        ofa_form=ofa.form, ofa_image_sizes=list(ofa.image_sizes), ofa_unit="fraction (x 100 here: top-1 %)",
        resolution_fallback={str(k): v for k, v in nearest.items()},
    )
    out = save_predictor(predictor, Path(run.path) / RUN_PREDICTOR_DIR, meta)
    return PredictorImport(out, ofa.form, ofa.image_sizes, nearest)


def export_ofa_checkpoint(run: Any, out: str | Path) -> dict[str, Any]:
    """Write `run`'s supernet as `{"state_dict": ...}` under OFA's names, which OFA's class loads strictly.

    Refused (one line) for spaces OFA has no class for. Writes `<out>.json` saying how to build OFA's class.
    """
    out = check_output_file(out)
    check_output_file(out.with_name(out.name + ".json"), "--out (its sidecar)")
    space: SearchSpace = run.space
    net = published_net(space)
    if net is None:
        offered = ", ".join(sorted({f"{n.space} (width {n.width:g})" for n in PUBLISHED.values() if n.space}))
        raise CheckpointError(f"space '{space.name}' (width {space.width_mult:g}) has no Once-for-All class; "
                              f"OFA builds {offered}")
    state = {k: v.detach().cpu() for k, v in run.supernet.state_dict().items()}
    exported = nasforge_to_ofa(state, space)
    buffer = io.BytesIO()
    torch.save({"state_dict": exported}, buffer)
    atomic_write_bytes(out, buffer.getvalue())
    sidecar = {
        "format": "ofa", "ofa_class": f"ofa.imagenet_classification.elastic_nn.networks.{net.ofa_class}",
        "ofa_kwargs": {**net.ofa_kwargs, "n_classes": space.num_classes}, "published_net": net.name,
        "tensors": len(exported), "space": {"name": space.name, "fingerprint": space.fingerprint},
        "provenance": {"run": str(run.path), "supernet_sha256": run.checkpoint_sha256},
        "load": "net = OFAClass(**ofa_kwargs); net.load_state_dict(torch.load(FILE, weights_only=True)['state_dict'])",
    }
    atomic_write_json(out.with_name(out.name + ".json"), sidecar)
    return sidecar


__all__ = [
    "IMAGENET_EVAL",
    "ImportResult",
    "PredictorImport",
    "export_ofa_checkpoint",
    "holds_run",
    "import_config",
    "import_ofa_checkpoint",
    "import_ofa_predictor",
]
