"""A built wheel carries the shipped spaces, configs and tables, and finds them without the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import hatchling  # noqa: F401 - building the wheel needs it (test extra): missing is an error, not a skip
import pytest

from nasforge.resources import PACKAGED_DIR, REPO_DIR, shipped_dir


def test_checkout_finds_top_level_folders():
    assert not PACKAGED_DIR.exists(), "nasforge/_data is the wheel's copy; it must not exist in the checkout"
    assert shipped_dir("search_spaces") == REPO_DIR / "search_spaces"
    assert shipped_dir("configs", "targets") == REPO_DIR / "configs" / "targets"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(REPO_DIR)], check=True, timeout=300)
    (path,) = out.glob("nasforge-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_shipped_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("search_spaces", "configs/train", "configs/targets", "predictors/latency"):
        shipped = {p.relative_to(REPO_DIR).as_posix() for p in (REPO_DIR / folder).glob("*") if p.is_file()}
        assert shipped, folder
        assert {f"nasforge/_data/{n}" for n in shipped} <= names, folder
    assert "nasforge/_data/configs/quickstart.yaml" in names
    assert "nasforge/testing/spaces/tiny-mbv3.yaml" in names


@pytest.mark.slow
def test_installed_wheel_works_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    probe = """
import json
import nasforge
from nasforge.space import SPACES_DIR, list_spaces, load_space
from nasforge.latency.targets import load_target
from nasforge.latency.model import load_latency_model
from nasforge.train.config import load_config
from nasforge.pipelines.quickstart import DEFAULT_CONFIG
space = load_space("mobilenetv3-ofa-cifar")  # a space with a shipped cpu table
model = load_latency_model("cpu", space)
print(json.dumps({"module": nasforge.__file__, "spaces_dir": str(SPACES_DIR), "spaces": list_spaces(),
                  "target": load_target("gpu").name, "source": model.source,
                  "latency": float(model.predict([space.largest()])[0]),
                  "schedule": load_config().schedule.name, "quickstart": DEFAULT_CONFIG.is_file()}))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["module"].startswith(str(site))
    assert got["spaces_dir"].startswith(str(site))
    assert {"mobilenetv3-ofa", "mobilenetv3-ofa-cifar", "resnet-ofa", "mobilenetv3-tiny"} <= set(got["spaces"])
    # the shipped cpu table was measured on an AMD EPYC VM: "measured" there, "measured on <its CPU>" elsewhere
    assert got["target"] == "gpu" and got["source"].startswith("measured") and got["latency"] > 0
    assert got["quickstart"]
