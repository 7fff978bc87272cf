"""Bundle round trip: write a bundle, run it (`python bundle.zip`) without torch, import, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.latency import ort_timing
from nasforge.latency.bundle import import_table, write_bundle
from nasforge.latency.lut import LatencyTable
from nasforge.latency.model import load_latency_model
from nasforge.latency.reference import reference_block, reference_subnet
from nasforge.latency.targets import load_target
from nasforge.testing import TINY_SPACES_DIR, tiny_space

NO_TORCH = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


def test_runner_in_the_bundle_is_the_library_protocol(tmp_path):
    write_bundle(tmp_path / "b.zip", tiny_space("tiny-mbv3"), load_target("cpu"), warmup=1, repeats=3)
    package = Path(ort_timing.__file__).parent
    modules = sorted(f.name for f in package.glob("*.py"))
    assert {"rounds.py", "stats.py", "runner.py", "tablemeta.py", "__init__.py"} <= set(modules)
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        carried = sorted(n.split("/", 1)[1] for n in zf.namelist() if n.startswith("ort_timing/"))
        assert carried == modules  # the whole package, every module of it
        for name in modules:
            assert zf.read(f"ort_timing/{name}").decode() == (package / name).read_text()
        assert "from ort_timing.runner import main" in zf.read("__main__.py").decode()


def run_runner(bundle: Path, out: Path) -> subprocess.CompletedProcess:
    """`python bundle.zip --out ...` with torch made unimportable (the device has none)."""
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(bundle), "--out", str(out), "--repeats", "3", "--warmup", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bundle_round_trip(tmp_path):
    space = tiny_space("tiny-mbv3")
    target = load_target("cpu")
    rng = np.random.default_rng(0)
    topk = space.sample_many(rng, 2)
    bundle = tmp_path / "bundle.zip"
    manifest = write_bundle(bundle, space, target, validate=6, topk=topk, warmup=1, repeats=3)
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
    assert "manifest.json" in names and "ort_timing/runner.py" in names
    assert all(b["file"] in names for b in manifest["blocks"])
    roles = [v["role"] for v in manifest["verify"]]
    assert roles.count("topk") == 2 and roles.count("validation") == 6 and roles.count("repeat") == 4
    assert [v["design"] for v in manifest["verify"] if v["role"] == "validation"] == [True] * 2 + [False] * 4

    out = tmp_path / "lut.json"
    proc = run_runner(bundle, out)
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(out.read_text())
    assert raw["metadata"]["made_by"] == "profile_bundle.py"
    assert len(raw["entries"]) == len(manifest["blocks"])
    assert len(raw["verify"]) == len(manifest["verify"])
    # every group was timed beside the speed reference (protocol v6)
    assert manifest["reference"]["block"]["key"] == reference_block(space).key
    assert manifest["reference"]["subnet"]["key"] == reference_subnet(space).key
    assert "reference/subnet.onnx" in names
    assert all(e["reference_ms"] > 0 for e in raw["entries"].values())
    assert all(v["reference_ms"] > 0 for v in raw["verify"])
    speed = raw["metadata"]["speed_reference"]
    assert speed["block"] == reference_block(space).key and speed["block_ms"] > 0

    # re-running resumes: nothing left to time, file unchanged in content
    proc = run_runner(bundle, out)
    assert proc.returncode == 0 and "already measured" in proc.stderr
    assert json.loads(out.read_text())["entries"] == raw["entries"]

    dest = tmp_path / "imported.json"
    table, report = import_table(out, space, dest)
    v = report.validation
    assert v.n == 6 and v.noise.repeat_n == 4  # repeat timings ran last on the "device"
    # stored as the calibration only when the device's repeated timings agreed (a loaded CI box may not)
    assert ("calibration" in table.metadata) == v.trusted
    assert ("validation_rejected" in table.metadata) == (not v.trusted)
    assert table.metadata["machine"]["cpu"] and table.metadata["run_overhead_ms"] > 0
    assert len(report.topk) == 2 and all(r.measured_ms > 0 for r in report.topk)
    assert v.speed_reference["subnet"] == reference_subnet(space).key and v.speed_reference["subnet_ms"] > 0
    assert report.provider_warning is None  # cpu target, CPU EP: what was asked ran
    model = load_latency_model("cpu", space, dest)
    assert model.source == "measured"
    assert model.predict(topk).shape == (2,)

    result = CliRunner().invoke(
        app,
        [
            "lut",
            "import",
            str(out),
            "--space",
            str(TINY_SPACES_DIR / "tiny-mbv3.yaml"),
            "--out",
            str(tmp_path / "cli.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "top-K subnets measured on the device" in result.output


def board_env(root: Path) -> dict[str, str]:
    """The Python path of a board: the standard library plus numpy and onnxruntime, no torch and no nasforge
    (run with `python -S`: no site-packages, where this venv keeps torch and its editable nasforge)."""
    import numpy
    import onnxruntime

    lib = root / "board-site"
    lib.mkdir()
    for package in (numpy, onnxruntime):
        folder = Path(package.__file__).parent
        for path in (folder, folder.with_name(f"{folder.name}.libs")):  # numpy.libs: its wheel's shared libraries
            if path.exists():
                (lib / path.name).symlink_to(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, "PYTHONPATH": str(lib)}


PROBE = ("import importlib.util, json; "
         "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
         "('nasforge', 'torch', 'numpy', 'onnxruntime')}))")


@pytest.fixture(scope="module")
def board_lut(tmp_path_factory):
    """A tiny space's bundle run as a board runs it, `python bundle.zip`, where torch and nasforge do not exist."""
    root = tmp_path_factory.mktemp("board")
    space, target = tiny_space("tiny-mbv3"), load_target("cpu")
    manifest = write_bundle(root / "bundle.zip", space, target, warmup=1, repeats=3)
    env = board_env(root)
    probe = subprocess.run([sys.executable, "-S", "-c", PROBE], cwd=root, env=env, capture_output=True, text=True,
                           timeout=60)
    proc = subprocess.run([sys.executable, "-S", "bundle.zip", "--out", "lut.json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    return manifest, json.loads(probe.stdout), proc, root / "lut.json"


def test_the_bundle_runs_on_a_board_without_torch_or_nasforge(board_lut):
    manifest, importable, proc, out = board_lut
    assert importable == {"nasforge": False, "torch": False, "numpy": True, "onnxruntime": True}
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(out.read_text())
    assert raw["format"] == ort_timing.LUT_FORMAT and set(raw["entries"]) == {b["key"] for b in manifest["blocks"]}
    assert raw["metadata"]["protocol"] == manifest["protocol"]


def test_profiled_and_bundled_tables_share_one_metadata_writer(board_lut, monkeypatch, tmp_path):
    """The same target, space, threads and schedule give the same metadata, key by key, whether `nasforge profile`
    or the bundle's runner built the table; only the timings' results and the stamps differ."""
    from nasforge.latency import profiler

    _, _, proc, out = board_lut
    assert proc.returncode == 0, proc.stderr
    bundled = json.loads(out.read_text())["metadata"]
    space = tiny_space("tiny-mbv3")
    timer = profiler.Timer(load_target("cpu"), warmup=1, repeats=3)  # the real ORT backend, pinned like the board
    fake = {"median_ms": 1.0, "reference_ms": 1.0, "uncertainty": 0.0}
    monkeypatch.setattr(timer.impl, "time_blocks", lambda specs, *a, **k: [dict(fake) for _ in specs])
    monkeypatch.setattr(timer.impl, "time_overhead", lambda *a: dict(fake))
    profiler.build_table(space, timer, tmp_path / "t.json")
    profiled = json.loads((tmp_path / "t.json").read_text())["metadata"]
    results = {"entries", "stability", "run_overhead_ms", "speed_reference", "build_seconds"}
    stamps = {"date", "made_by"}
    assert set(profiled) - results - stamps == set(bundled) - results - stamps
    for key in sorted(set(profiled) - results - stamps):
        assert profiled[key] == bundled[key], key
    assert {"target", "machine", "backend", "protocol", "cores", "space_fingerprint"} <= set(profiled)
    assert bundled["made_by"] == "profile_bundle.py" and "date" in bundled and "date" in profiled


def test_import_rejects_incomplete_table(tmp_path):
    space = tiny_space("tiny-mbv3")
    from nasforge.latency.enumerate import distinct_layers

    keys = [s.key for s in distinct_layers(space)]
    table = LatencyTable(
        {"target": "cpu", "space": space.name, "space_fingerprint": space.fingerprint},
        {k: {"median_ms": 1.0, "p90_ms": 1.0} for k in keys[1:]},
    )
    table.save(tmp_path / "partial.json")
    with pytest.raises(Exception, match=keys[0]):
        import_table(tmp_path / "partial.json", space)
