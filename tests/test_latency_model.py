"""Issue #15: measurement hygiene on a fake timer, machine labels, calibration maths, user-folder lookup."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.errors import LatencyError
from nasforge.latency import calibration as cal
from nasforge.latency import lut as lut_mod
from nasforge.latency import ort_timing
from nasforge.latency.enumerate import distinct_layers
from nasforge.latency.lut import LatencyTable, machine_differences, this_machine, user_tables_dir
from nasforge.latency.model import TableFeatures, find_best_table, load_latency_model, roofline_ms
from nasforge.latency.targets import load_target
from nasforge.testing import TINY_SPACES_DIR, tiny_space

TINY = str(TINY_SPACES_DIR / "tiny-mbv3.yaml")
OTHER = {"cpu": "Other CPU 9000", "cpu_id": "GenuineOther 1/2/3", "isa": ["avx2", "fma"]}


# ---------------------------------------------------------------------------- stability on a fake timer
def scripted(*spreads, ms=(1.0,)):
    """A fake measurement: the i-th call reports uncertainty spreads[i] (and median ms[i] if given)."""
    calls = []

    def measure():
        i = len(calls)
        calls.append(i)
        return {"median_ms": ms[min(i, len(ms) - 1)], "p90_ms": 2.0, "uncertainty": spreads[min(i, len(spreads) - 1)]}

    return measure, calls


def test_time_stable_remeasures_until_calm_and_keeps_the_calm_one():
    measure, calls = scripted(0.40, 0.30, 0.05, ms=(1.4, 1.2, 1.0))
    t = ort_timing.time_stable(measure, max_uncertainty=0.10, retries=2)
    assert len(calls) == 3 and t["attempts"] == 3 and t["stable"] is True and t["median_ms"] == 1.0


def test_time_stable_is_bounded_and_says_unstable():
    measure, calls = scripted(0.50, 0.30, 0.40, 0.01, ms=(1.5, 1.3, 1.4, 1.0))
    t = ort_timing.time_stable(measure, max_uncertainty=0.10, retries=2)
    assert len(calls) == 3  # 1 + retries, never the calm 4th attempt
    assert t["stable"] is False and t["median_ms"] == 1.3  # the calmest attempt is kept
    measure, calls = scripted(0.50)
    assert ort_timing.time_stable(measure, max_uncertainty=0.1, retries=0)["attempts"] == 1 and len(calls) == 1


def test_time_stable_stops_at_a_calm_first_attempt():
    measure, calls = scripted(0.02)
    t = ort_timing.time_stable(measure, max_uncertainty=0.10, retries=5)
    assert len(calls) == 1 and t["stable"] and t["attempts"] == 1


def test_summarise_drops_preempted_runs_and_keeps_the_quieter_rounds():
    # round 0 clean at 1.0 ms, round 1 clean but slowed to 1.3 ms, round 2 hit by preemption (9 ms)
    times = np.array([1.0] * 10 + [1.3] * 10 + [9.0] * 10)
    preempted = np.array([False] * 20 + [True] * 10)
    rounds = np.repeat([0, 1, 2], 10)
    s = ort_timing.summarise(times, preempted, rounds).to_dict()
    assert s["median_ms"] == pytest.approx(1.0)  # preempted runs dropped, the quieter half of the rounds kept
    assert s["clean"] == 20 and s["preempted"] == pytest.approx(1 / 3, abs=1e-3) and s["runs"] == 30
    assert s["rounds_spread"] == pytest.approx(0.8 * 0.3 / 1.15, abs=1e-3)  # p90 - p10 of the two round medians
    assert s["p90_ms"] >= s["median_ms"] and s["median_all_ms"] == pytest.approx(1.3)
    # fewer than 3 clean runs: every run is used, and `clean` says so
    s = ort_timing.summarise(np.array([2.0, 2.2, 2.4]), np.array([True, True, False])).to_dict()
    assert s["clean"] == 1 and s["median_ms"] == pytest.approx(2.2)


def test_median_uncertainty_on_known_numbers():
    # median 1.0, MAD 0.1: sigma 0.14826, standard error of the median 1.2533 x sigma / sqrt(5)
    assert ort_timing.median_uncertainty(np.array([0.9, 1.0, 1.1, 1.2, 0.8])) == pytest.approx(0.0831, abs=1e-4)
    assert ort_timing.median_uncertainty(np.array([2.0, 2.0, 2.0])) == 0.0
    assert ort_timing.median_uncertainty(np.array([1.0])) == 0.0
    s = ort_timing.summarise(np.array([1.0, 1.0, 1.2, 1.2, 0.8, 0.8]), round_of=np.array([0, 0, 1, 1, 2, 2])).to_dict()
    assert s["uncertainty"] == pytest.approx(1.2533 * 1.4826 * 0.2 / np.sqrt(3), abs=1e-4)  # from the 3 rounds


class FakeSession:
    def run(self, outputs, feeds):
        return None


def test_time_stable_many_remeasures_only_the_unsteady_ones_together():
    script = {0: [0.02], 1: [0.5, 0.04], 2: [0.5, 0.4, 0.3]}  # per model: uncertainty of each attempt
    asked = []

    def measure(idx):
        asked.append(list(idx))
        return [{"median_ms": 1.0 + i, "uncertainty": script[i][sum(i in a for a in asked) - 1]} for i in idx]

    out = ort_timing.time_stable_many(measure, 3, max_uncertainty=0.1, retries=2)
    assert asked == [[0, 1, 2], [1, 2], [2]]  # bounded, and only the unsteady ones again
    assert [t["attempts"] for t in out] == [1, 2, 3] and [t["stable"] for t in out] == [True, True, False]
    assert out[2]["uncertainty"] == 0.3


def test_interleaved_timing_gives_every_model_its_runs(monkeypatch):
    monkeypatch.setattr(ort_timing.rounds, "involuntary_switches", lambda: 0)
    order = []

    class Named(FakeSession):
        def __init__(self, name):
            self.name = name

        def run(self, outputs, feeds):
            order.append(self.name)

    models = [(Named("a"), {}), (Named("b"), {})]
    out = ort_timing.time_interleaved(models, warmup=0, repeats=4, rounds=2, pause_s=0, switch_runs=1)
    assert [t["runs"] for t in out] == [4, 4]
    # warm-up, then per round: one untimed run and two timed ones for a, then for b
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    order.clear()
    out = ort_timing.time_interleaved(models, warmup=0, repeats=4, pause_s=0)  # the protocol's defaults
    assert [t["runs"] for t in out] == [4, 4] and ort_timing.protocol(1, 0, 4)["switch_runs"] == 1
    assert order == ["a", "b"] + (["a"] * 2 + ["b"] * 2) * 4  # rounds (at most 1 per run) of 1 run after 1 untimed
    order.clear()
    out = ort_timing.time_interleaved(models, warmup=0, repeats=50, pause_s=0)
    assert [t["runs"] for t in out] == [50, 50] and len(order) == 2 + 2 * ort_timing.INTERLEAVED_ROUNDS * 3


def test_interleaved_timing_against_a_reference_divides_out_the_machine_speed(monkeypatch):
    """Every round the whole machine runs at another speed; each model's ratio to the reference does not move."""
    monkeypatch.setattr(ort_timing.rounds, "involuntary_switches", lambda: 0)
    speeds = [1.0, 1.6, 0.8, 1.3, 1.0, 1.2]

    class Clock:
        now, phase = 0.0, 0

        def perf_counter(self):
            return self.now

        def sleep(self, seconds):  # the pause between rounds: the machine changes speed
            self.phase += 1

    clock = Clock()
    monkeypatch.setattr(ort_timing.rounds, "time", clock)

    class Costly(FakeSession):
        def __init__(self, ms):
            self.ms = ms

        def run(self, outputs, feeds):
            clock.now += self.ms * 1e-3 * speeds[clock.phase % len(speeds)]

    models = [(Costly(2.0), {}), (Costly(0.5), {}), (Costly(1.0), {})]  # the last one: the reference
    out = ort_timing.time_interleaved(models, warmup=0, repeats=10, rounds=5, pause_s=0.001, reference=True)
    assert [t["reference_ratio"] for t in out[:2]] == pytest.approx([2.0, 0.5])
    assert all(t["rounds_spread"] == 0.0 and t["uncertainty"] == 0.0 for t in out[:2])  # steady beside the reference...
    assert out[2]["rounds_spread"] == pytest.approx(0.6)  # ...though the machine's speed moved (p90 - p10: 60%)
    speed = out[2]["median_ms"]
    read = [ort_timing.at_reference_speed({**t, "reference_ms": speed}, speed) for t in out[:2]]
    assert read == pytest.approx([2.0 * speed, 0.5 * speed])


@pytest.mark.parametrize("ms, runs", [(1.0, 40), (0.2, 40), (4.0, 26), (30.0, 10)])
def test_fast_models_get_more_rounds_up_to_a_bound(monkeypatch, ms, runs):
    """min_timed_ms=100 with 5 rounds of 2: a 4 ms model needs 25 runs (13 rounds), a 1 ms one 100 (capped at 4 x 5
    rounds = 40 runs), a 30 ms one keeps its 10."""
    monkeypatch.setattr(ort_timing.rounds, "involuntary_switches", lambda: 0)

    class Clock:
        now = 0.0

        def perf_counter(self):
            return self.now

        def sleep(self, seconds):
            pass

    clock = Clock()
    monkeypatch.setattr(ort_timing.rounds, "time", clock)

    class Costly(FakeSession):
        def run(self, outputs, feeds):
            clock.now += ms * 1e-3

    runs_out = ort_timing.interleaved_runs([(Costly(), {}), (Costly(), {})], warmup=0, repeats=10, rounds=5,
                                           pause_s=0, min_timed_ms=100.0)
    assert [len(t) for t, _, _ in runs_out] == [runs, runs]
    assert len(ort_timing.interleaved_runs([(Costly(), {})], warmup=0, repeats=10, rounds=5, pause_s=0)[0][0]) == 10


def test_timed_runs_adds_rounds_while_preempted_and_stops_at_the_cap(monkeypatch):
    counter = iter(range(10**6))
    monkeypatch.setattr(ort_timing.rounds, "involuntary_switches", lambda: next(counter))  # every run preempted
    times, preempted, rounds = ort_timing.timed_runs(FakeSession(), {}, warmup=0, repeats=20, rounds=4, pause_s=0)
    assert len(times) == 4 * 20 and preempted.all() and rounds.max() == 15  # bounded: 4 x repeats
    monkeypatch.setattr(ort_timing.rounds, "involuntary_switches", lambda: 0)  # a quiet machine
    times, preempted, rounds = ort_timing.timed_runs(FakeSession(), {}, warmup=0, repeats=20, rounds=4, pause_s=0)
    assert len(times) == 20 and not preempted.any()


class PhasedMachine:
    """A fake clock and scheduler: the machine's speed changes at every pause between rounds, and during the first
    `busy` rounds every run is preempted (the process's involuntary context switches move while it runs). Run times
    are dyadic (multiples of 2**-13 s), so the clock adds them up exactly whatever else ran in between."""

    speeds = (1.0, 1.25, 0.875, 1.625, 1.125, 1.5, 0.75)

    def __init__(self, busy: int) -> None:
        self.now, self.phase, self.switches, self.busy, self.runs = 0.0, 0, 0, busy, 0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.phase += 1

    def session(self) -> FakeSession:
        machine = self

        class Phased(FakeSession):
            def run(self, outputs, feeds):
                machine.now += 2**-10 * machine.speeds[machine.phase % len(machine.speeds)]
                machine.runs += 1
                machine.switches += machine.phase < machine.busy

        return Phased()


def test_single_model_timing_is_the_interleaved_loop_with_a_group_of_one(monkeypatch):
    """One round loop (`rounds.run_rounds`): one model timed alone and a group of one timed interleaved give the same
    runs, rounds (added while preempted) and statistics."""
    from nasforge.latency.ort_timing import rounds

    loops = []
    real_loop = rounds.run_rounds
    monkeypatch.setattr(rounds, "run_rounds", lambda sessions, *a, **k: loops.append(len(sessions))
                        or real_loop(sessions, *a, **k))

    def timed(path):
        machine = PhasedMachine(busy=4)
        monkeypatch.setattr(rounds, "time", machine)
        monkeypatch.setattr(rounds, "involuntary_switches", lambda: machine.switches)
        if path == "single":
            runs = ort_timing.timed_runs(machine.session(), {}, warmup=2, repeats=20, rounds=4, pause_s=0.001)
        else:
            runs = ort_timing.interleaved_runs([(machine.session(), {})], warmup=2, repeats=20, rounds=4,
                                               pause_s=0.001)[0]
        return runs, machine.runs

    (single, n_single), (group, n_group) = timed("single"), timed("group")
    assert loops == [1, 1]  # both paths went through the one loop
    # 1 + 2 warm-up runs, 25 timed; interleaved, one untimed run more at the start of each of the 5 rounds
    assert (n_single, n_group) == (3 + 25, 3 + 25 + 5)
    for a, b in zip(single, group):
        np.testing.assert_array_equal(a, b)
    times, preempted, round_of = single
    # 4 rounds of 5 all preempted, so a fifth round (5 clean runs: a quarter of the repeats) was added
    assert len(times) == 25 and preempted.sum() == 20 and round_of.max() == 4
    assert ort_timing.summarise(*single) == ort_timing.summarise(*group)
    assert ort_timing.summarise(*single).median_ms == 1.125 * 1e3 / 1024  # the one clean round's speed


def block_cost(spec):
    from nasforge.layers import layer_macs

    return 0.01 + layer_macs(spec) * 1e-8


class FakeBackend:
    """Blocks cost their MACs; every third block comes out unsteady on its first attempt.

    speeds: the machine's speed in successive groups (every timing of a group, the reference's too, is
    multiplied by it): a machine whose speed wanders as a whole.
    """

    name, provider, device = "ort", "CPUExecutionProvider", "fake CPU"

    def __init__(self, speeds=(1.0,)):
        self.calls: dict[str, int] = {}
        self.speeds, self.groups = speeds, 0

    def time_block(self, spec, warmup, repeats, speed=1.0):
        n = self.calls[spec.key] = self.calls.get(spec.key, 0) + 1
        shaky = len(self.calls) % 3 == 0 and n == 1
        ms = block_cost(spec) * speed
        return {"median_ms": ms * (1.5 if shaky else 1), "p90_ms": ms * 2, "uncertainty": 0.5 if shaky else 0.01,
                "spread": 0.02, "preempted": 0.0}

    def time_blocks(self, specs, warmup, repeats, reference=None):
        speed = self.speeds[self.groups % len(self.speeds)]
        self.groups += 1
        timings = [self.time_block(s, warmup, repeats, speed) for s in specs]
        if reference is not None:
            timings = [{**t, "reference_ms": block_cost(reference) * speed} for t in timings]
        return timings

    def time_overhead(self, warmup, repeats):
        return {"median_ms": 0.004, "p90_ms": 0.005, "rounds_spread": 0.0}


@pytest.fixture
def fake_timer(monkeypatch):
    from nasforge.latency import profiler

    backend = FakeBackend()
    monkeypatch.setattr(profiler, "open_backend", lambda target, threads: backend)
    return profiler.Timer(load_target("cpu"), threads=1, warmup=0, repeats=5, pin=False), backend


def test_build_table_remeasures_unsteady_blocks_and_records_stability(fake_timer, tmp_path):
    from nasforge.latency.profiler import build_table

    timer, backend = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    n = len(distinct_layers(space))
    shaky = [k for k, c in backend.calls.items() if c == 2]
    assert len(table.entries) == n and len(shaky) == n // 3
    assert all(table.entries[k]["attempts"] == 2 and table.entries[k]["stable"] for k in shaky)
    st = table.metadata["stability"]
    assert st["blocks_retried"] == n // 3 and st["blocks_unstable"] == 0
    assert table.metadata["run_overhead_ms"] == pytest.approx(0.004)
    assert table.metadata["machine"]["cpu"] == this_machine()["cpu"] and "isa" in table.metadata["machine"]


@pytest.mark.parametrize(("save_every_s", "saves"), [(-1.0, [16, 32, 35]), (1e9, [35])])
def test_blocks_are_timed_in_groups_and_saved_at_the_interval_and_at_the_end(save_every_s, saves):
    assert ort_timing.BLOCK_GROUP == 16
    timed, recorded, saved, progress = [], {}, [], []

    def time_group(group):
        timed.append(list(group))
        return [{"median_ms": float(i)} for i in group]

    ort_timing.measure_in_groups(
        list(range(35)), time_group, lambda i, t: recorded.__setitem__(i, t["median_ms"]),
        lambda done, total: saved.append((done, total)), save_every_s=save_every_s,
        on_progress=lambda done, total: progress.append(done),
    )
    assert [len(g) for g in timed] == [16, 16, 3] and sum(timed, []) == list(range(35))
    assert recorded == {i: float(i) for i in range(35)}
    assert saved == [(d, 35) for d in saves] and progress == [16, 32, 35]
    nothing: list = []
    ort_timing.measure_in_groups([], time_group, recorded.__setitem__, lambda d, t: nothing.append(d))
    assert nothing == [] and len(timed) == 3


def test_profiler_and_bundle_runner_time_blocks_through_the_one_group_loop(fake_timer, monkeypatch, tmp_path):
    from nasforge.latency.ort_timing import runner

    calls = []
    real = ort_timing.measure_in_groups

    def spy(todo, *args, **kwargs):
        calls.append(len(todo))
        return real(todo, *args, **kwargs)

    monkeypatch.setattr(ort_timing, "measure_in_groups", spy)
    monkeypatch.setattr(runner, "measure_in_groups", spy)
    timer, _ = fake_timer
    table = build_table_for(timer, tmp_path / "t.json")
    lut = {"metadata": {"provider": "CPUExecutionProvider"}, "entries": {"a": {"median_ms": 1.0}}}
    blocks = [{"key": k, "file": f"{k}.onnx"} for k in ("a", "b", "c")]
    fake_many = lambda files, kind: [{"median_ms": 2.0, "file": f} for f in files]  # noqa: E731
    runner._time_bundle_blocks(lut, blocks, fake_many, str(tmp_path / "b.json"), lambda line: None)
    assert calls == [len(table.entries), 2]
    assert set(lut["entries"]) == {"a", "b", "c"} and lut["entries"]["c"]["file"] == "c.onnx"
    assert json.loads((tmp_path / "b.json").read_text())["entries"] == lut["entries"]


def build_table_for(timer, out):
    from nasforge.latency.profiler import build_table

    return build_table(tiny_space("tiny-mbv3"), timer, out)


# ---------------------------------------------------------------------------- the speed reference
def test_speed_reference_reads_blocks_timed_at_different_machine_speeds_at_one_speed(monkeypatch, tmp_path):
    from nasforge.latency import profiler
    from nasforge.latency.reference import reference_block

    backend = FakeBackend(speeds=(1.0, 1.4, 0.8))  # the whole machine 40% slower, then 20% faster
    monkeypatch.setattr(profiler, "open_backend", lambda target, threads: backend)
    timer = profiler.Timer(load_target("cpu"), threads=1, warmup=0, repeats=5, pin=False)
    space = tiny_space("tiny-mbv3")
    table = profiler.build_table(space, timer, tmp_path / "t.json")
    specs = distinct_layers(space)
    assert backend.groups >= 3
    raw = np.array([table.entries[s.key]["median_ms"] / block_cost(s) for s in specs])
    read = np.array([table.ms(s.key) / block_cost(s) for s in specs])
    assert np.ptp(raw) > 0.5  # the plain medians carry their group's speed
    assert np.ptp(read) < 1e-3  # read at the reference speed, every block has the same scale (entries keep 6 decimals)
    ref = reference_block(space)
    meta = LatencyTable.load(tmp_path / "t.json").metadata["speed_reference"]
    assert meta["block"] == ref.key
    assert meta["block_ms"] == pytest.approx(block_cost(ref) * float(np.median(raw)), rel=1e-3)
    assert meta["block_range"] > 0.5


def test_at_reference_speed_and_reference_speed():
    timings = [{"median_ms": 2.0, "reference_ms": 1.0}, {"median_ms": 3.0, "reference_ms": 1.5},
               {"median_ms": 5.0, "reference_ms": 1.2}]
    assert ort_timing.reference_speed(timings) == pytest.approx(1.2)
    assert [ort_timing.at_reference_speed(t, 1.2) for t in timings] == pytest.approx([2.4, 2.4, 5.0])
    assert ort_timing.at_reference_speed({"median_ms": 2.0}, 1.2) == 2.0  # timed without a reference
    assert ort_timing.at_reference_speed(timings[0], None) == 2.0
    assert ort_timing.reference_speed([{"median_ms": 1.0}]) is None


def test_time_models_times_the_reference_in_the_same_group():
    null = ort_timing.null_model()
    timings = ort_timing.time_models([null, null], warmup=1, repeats=5, reference=null)
    assert len(timings) == 2 and all(t["reference_ms"] > 0 for t in timings)
    assert timings[0]["reference_ms"] == timings[1]["reference_ms"]  # one reference timing per group
    assert "reference_ms" not in ort_timing.time_models([null], warmup=1, repeats=5)[0]


def test_validation_reads_whole_subnets_at_the_reference_speed(fake_timer, tmp_path):
    from nasforge.latency.profiler import build_table, validate_table
    from nasforge.latency.reference import reference_subnet

    timer, backend = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    feats = TableFeatures(table, space)
    calls = []

    def drifting(sp, archs, warmup, repeats, reference):  # each group at another speed; the repeats 25% slower
        speed = (1.0, 1.15, 0.9)[len(calls) % 3] * (1.25 if len(calls) >= 3 else 1.0)
        calls.append(reference)
        ref_ms = float(truth(feats([reference]))[0]) * speed
        return [{"median_ms": float(truth(feats([a]))[0]) * speed, "rounds_spread": 0.01, "reference_ms": ref_ms}
                for a in archs]

    backend.time_subnets = drifting
    result = validate_table(space, table, timer, 24)
    assert all(ref == reference_subnet(space) for ref in calls)
    noise = result.noise
    assert noise.repeat_median_diff == pytest.approx(0, abs=1e-9) and noise.repeat_median_diff_raw > 0.1
    assert result.trusted and result.calibrated_cv5.within_10pct == 1.0
    assert result.calibrated_cv5.mape < 1e-3
    saved = LatencyTable.load(tmp_path / "t.json").metadata["speed_reference"]
    assert saved["subnet"] == reference_subnet(space).key and saved["subnet_ms"] > 0 and saved["block_ms"] > 0


def test_validation_refuses_raw_timings_among_reference_speed_ones(fake_timer, tmp_path):
    from nasforge.errors import MixedSpeedError
    from nasforge.latency.profiler import build_table, validate_table

    timer, backend = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    feats = TableFeatures(table, space)
    groups = []

    def half_referenced(sp, archs, warmup, repeats, reference):  # the second group lost its reference
        groups.append(len(archs))
        t = [{"median_ms": float(truth(feats([a]))[0]), "rounds_spread": 0.01} for a in archs]
        return [{**x, "reference_ms": 1.0} for x in t] if len(groups) != 2 else t

    backend.time_subnets = half_referenced
    with pytest.raises(MixedSpeedError, match=r"10 of \d+ timings carry no speed reference") as err:
        validate_table(space, table, timer, 24)
    assert "\n" not in str(err.value)
    assert "calibration" not in LatencyTable.load(tmp_path / "t.json").metadata  # nothing fitted on the mix


def test_a_table_mixing_raw_and_reference_speed_blocks_is_refused_and_an_old_one_still_works(fake_timer, tmp_path):
    from nasforge.errors import MixedSpeedError
    from nasforge.latency.profiler import build_table

    timer, _ = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    assert table.block_speed_ms and all(e.get("reference_ms") for e in table.entries.values())
    mixed = json.loads((tmp_path / "t.json").read_text())
    key = next(iter(mixed["entries"]))
    del mixed["entries"][key]["reference_ms"]  # one block timed alone, the rest beside the reference
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    with pytest.raises(MixedSpeedError, match="1 of .* timings carry no speed reference"):
        LatencyTable.load(tmp_path / "mixed.json")
    result = CliRunner().invoke(app, ["latency", "--target", "cpu", "--space", TINY, "--lut",
                                      str(tmp_path / "mixed.json"), "--arch", json.dumps(space.smallest().to_dict())])
    assert result.exit_code == 2 and "carry no speed reference" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    # a table from before the speed reference (no reference anywhere) still loads and reads its plain medians
    old = json.loads((tmp_path / "t.json").read_text())
    old["metadata"].pop("speed_reference")
    for entry in old["entries"].values():
        entry.pop("reference_ms", None)
        entry.pop("reference_ratio", None)
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = LatencyTable.load(tmp_path / "old.json")
    assert loaded.block_speed_ms is None and loaded.ms(key) == old["entries"][key]["median_ms"]
    assert load_latency_model("cpu", space, loaded.path).predict([space.smallest()])[0] > 0


def test_at_one_speed_reads_all_raw_without_a_speed():
    from nasforge.errors import MixedSpeedError
    from nasforge.latency.lut import at_one_speed

    mixed = [{"median_ms": 2.0, "reference_ms": 1.0}, {"median_ms": 3.0}]
    assert list(at_one_speed(mixed, None, "x")) == [2.0, 3.0]  # no speed: every timing raw, consistently
    assert list(at_one_speed(mixed[:1], 1.5, "x")) == [3.0]
    with pytest.raises(MixedSpeedError, match="x: 1 of 2 timings"):
        at_one_speed(mixed, 1.5, "x")


# ---------------------------------------------------------------------------- validation and the noise verdict
def truth(features):
    """A whole-net latency the block table misses: 0.9 x the blocks' own time + cold weights + a fixed cost."""
    return 0.9 * features["net_ms"] + 0.05 * features["weight_mb"] + 0.02


def test_steady_validation_is_stored_and_recovers_the_calibration(fake_timer, tmp_path):
    from nasforge.latency.profiler import build_table, validate_table

    timer, _ = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    feats = TableFeatures(table, space)
    steady = lambda a: {"median_ms": float(truth(feats([a]))[0]), "spread": 0.01, "rounds_spread": 0.01}  # noqa: E731
    result = validate_table(space, table, timer, 24, measure=steady)
    assert result.trusted and result.noise.repeat_median_diff == 0
    assert result.n_design == 6 and result.n_scored == 18
    assert result.calibrated_cv5.mape < 1e-3 and result.calibrated_cv5.within_10pct == 1.0
    saved = LatencyTable.load(tmp_path / "t.json").metadata
    assert saved["calibration"]["kind"] == cal.KIND
    assert saved["calibration"]["coef"]["net_ms"] == pytest.approx(0.9, rel=1e-4)
    assert "validation_rejected" not in saved and len(saved["validation_samples"]) == 24


def test_noisy_validation_says_so_and_is_not_stored(fake_timer, tmp_path):
    from nasforge.latency.profiler import build_table, validate_table

    timer, _ = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    table.metadata["calibration"] = {"kind": cal.KIND, "coef": {"net_ms": 1.0, "one": 0.0}}  # an earlier, quiet fit
    table.save(table.path)
    feats = TableFeatures(table, space)
    seen: dict[str, int] = {}

    def noisy(a):  # the second timing of a subnet comes out 20% slower: a neighbour woke up
        seen[a.key] = seen.get(a.key, 0) + 1
        return {"median_ms": float(truth(feats([a]))[0]) * (1.2 if seen[a.key] > 1 else 1.0), "rounds_spread": 0.01}

    result = validate_table(space, table, timer, 24, measure=noisy)
    assert result.trusted is False and "measured twice" in result.noise.reason
    saved = LatencyTable.load(tmp_path / "t.json").metadata
    assert saved["calibration"] == {"kind": cal.KIND, "coef": {"net_ms": 1.0, "one": 0.0}}  # left as it was
    assert saved["validation_rejected"]["noise"]["repeat_max_diff"] == pytest.approx(0.2)
    assert "validation" not in saved


def test_noise_verdict_bounds():
    from nasforge.latency.profiler import noise_verdict

    steady = noise_verdict(np.array([1.0, 2.0, 3.0]), np.array([1.01, 1.98, 3.03]), [{"stable": True}] * 10)
    assert steady.trusted and steady.repeat_max_diff == pytest.approx(0.01)
    one_off = noise_verdict(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.6]), [])
    assert not one_off.trusted and "15%" in one_off.reason
    shaky = noise_verdict(np.array([1.0]), np.array([1.0]), [{"stable": False}] * 3 + [{"stable": True}])
    assert not shaky.trusted and "unstable" in shaky.reason
    drifted = noise_verdict(np.array([1.0]), np.array([1.0]), [], block_drift=0.08)
    assert not drifted.trusted and "blocks timed again" in drifted.reason
    assert noise_verdict(np.array([1.0]), np.array([1.0]), [], block_drift=0.01).trusted


def test_validation_times_blocks_again_to_check_the_table_still_holds(fake_timer, tmp_path):
    from nasforge.latency.profiler import DRIFT_BLOCKS, build_table, validate_table

    timer, backend = fake_timer
    space = tiny_space("tiny-mbv3")
    table = build_table(space, timer, tmp_path / "t.json")
    before = sum(backend.calls.values())
    backend.time_subnets = lambda sp, archs, w, r, ref: [{"median_ms": 1.0 + 0.01 * len(a.key), "rounds_spread": 0.0}
                                                         for a in archs]
    result = validate_table(space, table, timer, 12)
    assert sum(backend.calls.values()) - before == DRIFT_BLOCKS  # the same (steady) blocks once more
    assert result.noise.block_drift == 0 and result.trusted


# ---------------------------------------------------------------------------- calibration maths
def feats(net, weight, act=None, blocks=None):
    n = len(net)
    return {"sum_ms": net + 0.005 * (blocks if blocks is not None else 10), "net_ms": net, "weight_mb": weight,
            "act_mb": np.zeros(n) if act is None else act, "blocks": np.full(n, 10.0) if blocks is None else blocks,
            "one": np.ones(n)}


def test_nnls_recovers_known_non_negative_coefficients():
    rng = np.random.default_rng(0)
    net, weight, act = rng.uniform(1, 10, 40), rng.uniform(0.5, 20, 40), rng.uniform(1, 30, 40)
    f = feats(net, weight, act)
    measured = 0.85 * net + 0.04 * weight + 0.01 * act + 0.1
    c = cal.fit_features(f, measured, ("net_ms", "weight_mb", "act_mb", "one"))
    assert c["coef"] == pytest.approx({"net_ms": 0.85, "weight_mb": 0.04, "act_mb": 0.01, "one": 0.1}, rel=1e-6)
    assert cal.apply(c, f) == pytest.approx(measured)
    # a truth with a negative part cannot be fitted with a negative coefficient
    c = cal.fit_features(f, 1.0 * net - 0.02 * weight + 0.5, ("net_ms", "weight_mb", "one"))
    assert min(c["coef"].values()) >= 0


def test_feature_selection_by_cross_validation():
    rng = np.random.default_rng(1)
    net, weight, act = rng.uniform(1, 10, 60), rng.uniform(0.5, 20, 60), rng.uniform(1, 30, 60)
    f = feats(net, weight, act)
    with_weights = cal.fit(f, (0.8 * net + 0.05 * weight + 0.05) * rng.uniform(0.99, 1.01, 60))
    assert with_weights["features"] == ["net_ms", "weight_mb", "one"] and "selection" in with_weights
    plain = cal.fit(f, (1.1 * net + 0.05) * rng.uniform(0.99, 1.01, 60))
    assert plain["features"] == ["net_ms", "one"]  # a richer set must earn its place
    few = cal.fit(f, 1.1 * net, candidates=cal.CANDIDATES)
    assert few["kind"] == cal.KIND


def test_small_net_where_the_old_linear_intercept_went_negative():
    """Whole nets slower than their blocks in proportion to their weights (cold caches), the smallest
    net outside the random sample's range: the old free-sign line predicts it far too low, the
    non-negative fit on block time + weights does not."""
    rng = np.random.default_rng(2)
    net = rng.uniform(4, 12, 30)
    weight = 0.6 * net**2 / 10 * rng.uniform(0.9, 1.1, 30)  # bigger nets carry disproportionally more weights
    f = feats(net, weight, blocks=np.round(net * 2))
    measured = net + 0.3 * weight
    old = cal.fit_linear(f["sum_ms"], f["blocks"], measured)
    assert old["c"] < 0  # the free intercept goes negative, as on the loaded 2-core machine (-2.07 ms)
    small = feats(np.array([0.8]), np.array([0.04]), blocks=np.array([2.0]))
    small_truth = 0.8 + 0.3 * 0.04
    assert cal.apply(old, small)[0] < 0.55 * small_truth  # more than 45% low (or negative)
    new = cal.fit(f, measured)
    assert cal.apply(new, small)[0] == pytest.approx(small_truth, rel=0.10)
    assert cal.apply(new, feats(np.zeros(3), np.zeros(3)))[0] >= 0  # never negative, even for nothing


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"kind": cal.KIND, "coef": {"net_ms": -0.1}}, ">= 0"),
        ({"kind": cal.KIND, "coef": {"bogus": 1.0}}, "unknown"),
        ({"kind": cal.KIND, "coef": {}}, "coef"),
        ({"kind": cal.KIND, "coef": {"one": float("nan")}}, "finite"),
        ({"kind": "spline"}, "not supported"),
        ({"kind": cal.LEGACY_KIND, "a": 1.0, "b": "x", "c": 0.0}, "'b'"),
    ],
)
def test_bad_calibrations_are_one_line_errors(bad, needle):
    with pytest.raises(LatencyError, match=needle):
        cal.check(bad)


def test_legacy_tables_still_load_and_predict():
    from nasforge.space import load_space

    space = load_space("mobilenetv3-ofa-cifar")
    # the table shipped until 2026-12-06: protocol v3, the legacy linear calibration, an Intel Xeon VM
    table = LatencyTable.load(Path(__file__).parent / "data" / "legacy_v3_cpu__mobilenetv3-ofa-cifar.json")
    assert table.metadata["calibration"]["kind"] == cal.LEGACY_KIND
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_latency_model("cpu", space, table.path)
    arch = space.smallest()
    f = model.features([arch])
    c = table.metadata["calibration"]
    assert model.predict([arch])[0] == pytest.approx(c["a"] * f["sum_ms"][0] + c["b"] * f["blocks"][0] + c["c"])


# ---------------------------------------------------------------------------- tables know their machine
def fake_table(space, machine, path, target="cpu", calibration=None, date="2026-01-01"):
    target_spec = load_target(target)
    entries = {s.key: {"median_ms": roofline_ms(s, target_spec), "p90_ms": roofline_ms(s, target_spec) * 1.1}
               for s in distinct_layers(space)}
    meta = {"target": target, "device": machine.get("cpu"), "machine": machine, "space": space.name,
            "space_fingerprint": space.fingerprint, "batch": 1, "date": date}
    if calibration:
        meta["calibration"] = calibration
    table = LatencyTable(meta, entries)
    table.save(path)
    return table


def test_another_machines_table_is_never_labelled_measured(tmp_path):
    space = tiny_space("tiny-mbv3")
    other = fake_table(space, OTHER, tmp_path / "other.json")
    with pytest.warns(UserWarning, match="measured on Other CPU 9000"):
        model = load_latency_model("cpu", space, other.path)
    assert model.source == "measured on Other CPU 9000" and not model.measured_here
    here = fake_table(space, this_machine(), tmp_path / "here.json")
    assert load_latency_model("cpu", space, here.path).source == "measured"
    legacy = fake_table(space, {"cpu": "Intel(R) Xeon(R) Processor"}, tmp_path / "legacy.json")
    legacy.metadata.pop("machine")
    legacy.save(legacy.path)  # an old table: only `device` names its CPU
    if this_machine()["cpu"] != "Intel(R) Xeon(R) Processor":
        with pytest.warns(UserWarning):
            assert load_latency_model("cpu", space, legacy.path).source == "measured on Intel(R) Xeon(R) Processor"
    # a remote target's table is measured on its device by definition
    rpi = fake_table(space, OTHER, tmp_path / "rpi.json", target="rpi5")
    assert load_latency_model("rpi5", space, rpi.path).source == "measured"


def test_machine_differences_on_identity_fields_only():
    here = this_machine()
    assert machine_differences(dict(here), here) == []
    assert machine_differences({**here, "ort_version": "0.1", "logical_cpus": 64}, here) == []  # notes, not identity
    assert machine_differences({**here, "isa": ["sse2"]}, here) == ["isa"]
    assert machine_differences({"cpu": None}, here)[0] == "cpu"


XEON_VM = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_id": "GenuineIntel 6/106/6", "isa": ["avx2", "avx512f", "fma"],
           "cache_kb": {"L1d": 48, "L2": 1280, "L3": 55296}}
XEON_8375C = {**XEON_VM, "cpu": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"}


@pytest.mark.parametrize("name, generic", [
    ("Intel(R) Xeon(R) Processor", True), ("AMD EPYC", True), ("Common KVM processor", True),
    ("QEMU Virtual CPU version 2.5+", True), ("AMD EPYC-Rome Processor", True), ("aarch64", True), (None, True),
    ("ARMv8 Processor rev 1 (v8l)", True), ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", False),
    ("AMD EPYC 7B13 64-Core Processor", False), ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", False),
    ("Apple M1", False), ("Raspberry Pi 5 Model B Rev 1.0", False),
])
def test_generic_cpu_names_have_no_model_number(name, generic):
    assert lut_mod.generic_cpu_name(name) is generic


@pytest.mark.parametrize("swap", [False, True])
def test_a_generic_cpu_name_alone_is_not_this_machine(swap):
    def diff(table, here):
        return machine_differences(here, table) if swap else machine_differences(table, here)

    legacy = {"cpu": "Intel(R) Xeon(R) Processor", "ort_version": "1.17.0"}  # the shipped tables' record
    assert diff(legacy, XEON_VM) == ["cpu_id", "isa", "cache_kb"]  # unknown, not equal
    assert diff(dict(XEON_VM), XEON_VM) == []  # the whole record matches: the same machine
    other_host = {**XEON_VM, "cpu_id": "GenuineIntel 6/85/7", "cache_kb": {"L1d": 32, "L2": 1024, "L3": 36608}}
    assert diff(other_host, XEON_VM) == ["cpu_id", "cache_kb"]
    assert diff({**XEON_VM, "cache_kb": {}}, XEON_VM) == ["cache_kb"]  # caches unread: not known to match
    assert diff({**XEON_VM, "cpu": "AMD EPYC"}, XEON_VM)[0] == "cpu"


def test_a_specific_cpu_name_needs_every_field_the_table_lacks():
    diff = machine_differences
    assert diff({"cpu": XEON_8375C["cpu"]}, XEON_8375C) == ["cpu_id", "isa"]  # an older table: unknown
    assert diff(dict(XEON_8375C), XEON_8375C) == []  # caches are not needed when the name has a model number
    assert diff({**XEON_8375C, "cache_kb": {"L3": 1}}, XEON_8375C) == []
    assert diff({**XEON_8375C, "isa": ["avx2", "fma"]}, XEON_8375C) == ["isa"]  # a VM that hides AVX-512
    assert diff(XEON_8375C, {**XEON_8375C, "cpu_id": "GenuineIntel 6/85/7"}) == ["cpu_id"]


def test_a_field_this_machine_cannot_read_is_no_evidence_for_a_specific_name():
    pi = {"cpu": "Raspberry Pi 5 Model B Rev 1.0", "cpu_id": None, "isa": ["asimd", "neon"]}
    assert machine_differences(dict(pi), pi) == []
    assert machine_differences({**pi, "isa": None}, pi) == ["isa"]
    arm_vm = {"cpu": "aarch64", "cpu_id": None, "isa": ["asimd"], "cache_kb": {"L2": 1024}}
    assert machine_differences(dict(arm_vm), arm_vm) == ["cpu_id"]  # generic and no CPU id: cannot tell


@pytest.mark.parametrize("cpuinfo, cpu_id", [
    ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
     "CPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\nprocessor\t: 1\nCPU part\t: 0xd40\n",
     "ARM 0x41/0xd0c/0x3/1"),  # Arm (Neoverse N1): no model name, so a generic one, identified by these
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n\n",
     "AuthenticAMD 25/1/1"),
    ("processor\t: 0\nmodel name\t: something\n\n", None),
])
def test_cpu_id_on_x86_and_arm(monkeypatch, cpuinfo, cpu_id):
    import io

    real_open = open
    monkeypatch.setattr(ort_timing.machine, "open", lambda path, *a, **k: io.StringIO(cpuinfo)
                        if path == "/proc/cpuinfo" else real_open(path, *a, **k), raising=False)
    assert ort_timing.machine._cpu_id() == cpu_id


def test_machine_key_of_a_generic_name_includes_its_caches():
    assert lut_mod.machine_key(XEON_VM) != lut_mod.machine_key({**XEON_VM, "cache_kb": {"L3": 1}})
    assert lut_mod.machine_key(XEON_8375C) == lut_mod.machine_key({**XEON_8375C, "cache_kb": {"L3": 1}})


def test_outputs_carry_the_label(tmp_path):
    from nasforge.export.pipeline import latency_entry

    space = tiny_space("tiny-mbv3")
    user = user_tables_dir()
    user.mkdir(parents=True, exist_ok=True)
    path = user / "cpu__tiny-other.json"
    fake_table(space, OTHER, path)
    try:
        arch = space.smallest()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry = latency_entry(space, arch, "cpu")
        assert entry.source == "predicted from a table measured on Other CPU 9000" and entry.device == "Other CPU 9000"
        result = CliRunner().invoke(app, ["latency", "--target", "cpu", "--space", TINY,
                                          "--arch", json.dumps(arch.to_dict())])
        assert result.exit_code == 0, result.output
        assert "measured on Other CPU 9000" in result.output and "nasforge profile --target cpu" in result.output
        result = CliRunner().invoke(app, ["latency", "--target", "cpu", "--space", TINY, "--json",
                                          "--arch", json.dumps(arch.to_dict())])
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)  # stdout is the JSON alone; the warning goes to stderr
        assert got["source"] == "measured on Other CPU 9000" and got["measured_on"] == "Other CPU 9000"
        assert got["arch"] == arch.key and got["table"] == str(path) and got["latency_ms"] > 0
    finally:
        path.unlink()


# ---------------------------------------------------------------------------- where tables are looked up
def test_lookup_order_user_folder_this_machine_first_then_shipped_then_roofline(tmp_path, monkeypatch):
    space = tiny_space("tiny-mbv3")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(lut_mod, "SHIPPED_DIR", shipped)
    monkeypatch.setenv("NASFORGE_HOME", str(tmp_path / "home"))
    user = user_tables_dir()
    assert user == tmp_path / "home" / "latency"
    target = load_target("cpu")

    with pytest.warns(UserWarning, match="ESTIMATED"):
        assert load_latency_model("cpu", space).source == "estimated"
    fake_table(space, OTHER, shipped / "a_other.json")
    assert find_best_table(target, space)[0].path == str(shipped / "a_other.json")
    fake_table(space, this_machine(), shipped / "b_here.json")
    assert find_best_table(target, space)[0].path == str(shipped / "b_here.json")  # this machine first
    user.mkdir(parents=True)
    fake_table(space, OTHER, user / "c_other.json")
    assert find_best_table(target, space)[0].path == str(user / "c_other.json")  # the user folder first
    fake_table(space, this_machine(), user / "d_here_old.json", date="2026-01-01")
    fake_table(space, this_machine(), user / "e_here_new.json", date="2026-06-01")
    best, others = find_best_table(target, space)
    assert best.path == str(user / "e_here_new.json") and len(others) == 4  # this machine, newest
    model = load_latency_model("cpu", space)
    assert model.source == "measured" and model.table.path == str(user / "e_here_new.json")
    explicit = load_latency_model("cpu", space, shipped / "b_here.json")
    assert explicit.table.path == str(shipped / "b_here.json")  # an explicit path wins


def test_profile_and_import_write_to_the_user_folder_never_the_package(tmp_path, monkeypatch):
    from nasforge.latency.profiler import default_table_path

    monkeypatch.setenv("NASFORGE_HOME", str(tmp_path / "home"))
    space = tiny_space("tiny-mbv3")
    path = default_table_path(load_target("cpu"), space)
    assert path.parent == tmp_path / "home" / "latency" and lut_mod.machine_key(this_machine()) in path.name
    before = sorted(p.name for p in lut_mod.SHIPPED_DIR.glob("*"))
    result = CliRunner().invoke(app, ["profile", "--target", "cpu", "--space", TINY, "--validate", "0",
                                      "--repeats", "3", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    assert path.is_file() and sorted(p.name for p in lut_mod.SHIPPED_DIR.glob("*")) == before
    table = LatencyTable.load(path)
    assert table.metadata["machine"]["cpu"] == this_machine()["cpu"]
    assert all("spread" in e and "preempted" in e for e in table.entries.values())  # every timing has its spread
    assert load_latency_model("cpu", space).table.path == str(path)


def test_user_dir_defaults(monkeypatch, tmp_path):
    from nasforge.resources import user_dir

    monkeypatch.delenv("NASFORGE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_dir("latency") == tmp_path / "xdg" / "nasforge" / "latency"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert user_dir("latency") == tmp_path / "h" / ".cache" / "nasforge" / "latency"


def test_quickstart_profiles_this_machine_once_then_reuses(monkeypatch, tmp_path):
    from nasforge.pipelines import quickstart as qs

    monkeypatch.setenv("NASFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(qs, "PROFILE_VALIDATE", 8)
    space = tiny_space("tiny-mbv3")
    notes: list[str] = []
    hooks = qs.QuickstartHooks(note=notes.append, warning=notes.append)
    model = qs._latency_model("cpu", space, hooks)
    assert model.source == "measured" and any("profiling" in n for n in notes)
    assert str(model.table.path).startswith(str(tmp_path / "home"))
    notes.clear()
    again = qs._latency_model("cpu", space, hooks)
    assert again.table.path == model.table.path and not any("profiling" in n for n in notes)
