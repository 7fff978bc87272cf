"""Engines declare what they need (`@needs`) and the pipeline asks the registry, never an engine's name."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nasforge
from nasforge.cli import app
from nasforge.search.config import SearchConfig
from nasforge.search.engines import ENGINES, EngineContext, EngineNeeds, EngineOptions, Recorder, engine_needs, needs
from nasforge.testing import TINY_SPACES_DIR

SPACE = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")
runner = CliRunner()


class MeasuringEngine:
    """Random batches, each also measured with the measurement function the pipeline handed over."""

    name = "test-measurer"

    def __init__(self, options: EngineOptions) -> None:
        self.measure = options.measure
        self.measured: list[tuple[list, np.ndarray]] = []

    def run(self, recorder: Recorder, ctx: EngineContext) -> None:
        rng = np.random.default_rng(ctx.seed)
        while recorder.remaining > 0:
            ev = recorder.evaluate(recorder.problem.space.sample_genes(rng, min(4, recorder.remaining)))
            if self.measure is not None:
                archs = recorder.problem.space.decode_batch(ev.genes)
                self.measured.append((archs, np.asarray(self.measure(archs), dtype=np.float64)))
            recorder.end_step()


@pytest.fixture
def fake_engines():
    """Two engines registered for this test only: one that needs measurements, one that declares nothing."""
    built: dict[str, MeasuringEngine] = {}

    @ENGINES.register("test-measurer", summary="test: needs measurements")
    @needs(measurements=True)
    def measurer(options: EngineOptions) -> MeasuringEngine:
        built["test-measurer"] = engine = MeasuringEngine(options)
        return engine

    @ENGINES.register("test-plain", summary="test: declares nothing")
    def plain(options: EngineOptions) -> MeasuringEngine:
        built["test-plain"] = engine = MeasuringEngine(options)
        return engine

    yield built
    for name in ("test-measurer", "test-plain"):
        ENGINES._entries.pop(name)  # the registry has no public removal; leave it as the other tests see it
    assert "test-measurer" not in ENGINES


@pytest.fixture
def fakes(monkeypatch):
    import nasforge.pipelines.search as pipeline
    from nasforge.testing.search import SyntheticAccuracy, TableLatency

    monkeypatch.setattr(pipeline, "load_accuracy", lambda path, run_dir, space: SyntheticAccuracy(space))
    monkeypatch.setattr(pipeline, "load_latency", lambda target, space, lut: TableLatency(space, target=target))


def test_declared_needs_are_read_from_the_registry(fake_engines):
    assert engine_needs("test-measurer") == EngineNeeds(measurements=True)
    assert engine_needs("test-plain") == EngineNeeds()
    assert engine_needs("linas").measurements
    assert not any(engine_needs(n).measurements for n in ("nsga2", "nsga3", "evolution", "random", "tpe", "gp"))


def test_an_engine_that_needs_measurements_gets_them_through_the_pipeline(tmp_path, fakes, fake_engines, tiny_run):
    """No pipeline edit names `test-measurer`: the real measurement on the run reaches it because it declares it."""
    from nasforge.pipelines.search import search_from_config
    from nasforge.train.runs import evaluate_subnets, load_run

    cfg = SearchConfig(run=str(tiny_run), engine="test-measurer", objectives=("accuracy", "params"), budget=8,
                       out=str(tmp_path / "o"))
    search_from_config(cfg, device="cpu")
    engine = fake_engines["test-measurer"]
    assert engine.measure is not None and len(engine.measured) == 2
    archs, measured = engine.measured[0]
    assert len(archs) == 4 and measured.shape == (4,)
    expected = evaluate_subnets(load_run(tiny_run, device="cpu"), archs, split="val")
    np.testing.assert_allclose(measured, expected)


def test_an_engine_that_declares_nothing_gets_no_measurement(tmp_path, fakes, fake_engines, tiny_run):
    from nasforge.pipelines.search import search_from_config

    cfg = SearchConfig(run=str(tiny_run), engine="test-plain", objectives=("accuracy", "params"), budget=4,
                       out=str(tmp_path / "o"))
    search_from_config(cfg, device="cpu")
    assert fake_engines["test-plain"].measure is None and fake_engines["test-plain"].measured == []


@pytest.mark.parametrize("engine", ["linas", "test-measurer"])
def test_an_engine_that_needs_measurements_without_a_run_exits_2_with_one_line(tmp_path, monkeypatch, fakes,
                                                                              fake_engines, engine):
    monkeypatch.chdir(tmp_path)  # the default --out (search-out/) is checked before the engine
    res = runner.invoke(app, ["search", "--space", SPACE, "--predictor", "p", "--target", "t", "--engine", engine])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"error: engine {engine} measures real accuracy: give --run RUN_DIR"]


def _engine_name_comparisons(path: Path, names: set[str]) -> list[str]:
    """Comparisons (==, !=, in, match/case) against an engine's name or with an `engine` operand."""

    def is_engine_name(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and node.value in names:
            return True
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(is_engine_name(e) for e in node.elts)
        ident = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        return "engine" in ident.lower()

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(is_engine_name(n) for n in (node.left, *node.comparators)):
            found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.match_case) and any(
            isinstance(p, ast.MatchValue) and is_engine_name(p.value) for p in ast.walk(node.pattern)
        ):
            found.append(f"{path.name}:{node.pattern.lineno}")
    return found


def test_pipelines_and_cli_never_compare_an_engine_name():
    root = Path(nasforge.__file__).parent
    names = set(ENGINES.names())
    files = sorted([*(root / "pipelines").rglob("*.py"), *(root / "cli").rglob("*.py")])
    assert len(files) > 5
    found = [hit for f in files for hit in _engine_name_comparisons(f, names)]
    assert found == []


def test_the_name_comparison_check_sees_what_it_forbids(tmp_path):
    names = {"linas", "nsga2"}
    bad = tmp_path / "bad.py"
    bad.write_text(
        'if cfg.engine == "linas": pass\n'
        'if "nsga2" != name: pass\n'
        'if engine in ("a", "b"): pass\n'
        'match x:\n    case "linas": pass\n'
    )
    assert _engine_name_comparisons(bad, names) == ["bad.py:1", "bad.py:2", "bad.py:3", "bad.py:5"]
    good = tmp_path / "good.py"
    good.write_text('if engine_needs(cfg.engine).measurements: pass\nif k in ("largest", "smallest"): pass\n')
    assert _engine_name_comparisons(good, names) == []
