"""Helper launched by tests/test_faults.py: train (or resume) a tiny run that stops dead at one named moment.

    python _fault_worker.py RUN_DIR CONFIG_JSON HOLD [resume]

CONFIG_JSON holds `tiny_train_config` keyword overrides.

HOLD is where the process holds still, with everything before that moment done and nothing after it,
so the test's SIGKILL lands exactly there (no timing decides where):
  step:N        mid-step: step N+1's optimizer update applied, the step not yet counted nor checkpointed
  write:N       mid-checkpoint-write: `last.pt` (iteration N) renamed away to `prev.pt`, the new one complete
                in its temp file, the rename not yet done
  metrics:E     epoch E's metrics line on disk, its checkpoint not yet written
  eval:E        mid-evaluation of epoch E: some subnets evaluated, not all
  none          no hold: run to the end
On reaching HOLD it prints "held HOLD" and waits on stdin; if the test closes stdin instead of killing,
it exits with code 3 (it never continues past HOLD).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from nasforge.testing.train import tiny_train_config
from nasforge.train import callbacks as cb
from nasforge.train import trainer as tr


def hold(point: str) -> None:
    print(f"held {point}", flush=True)
    sys.stdin.read()
    os._exit(3)


def install(trainer: tr.Trainer, point: str) -> None:
    """Patch the one seam where `point` lies; the patch holds there and changes nothing else."""
    kind, _, arg = point.partition(":")
    n = int(arg or 0)
    if kind == "step":
        real_step = trainer.train_step

        def step(*args: Any) -> Any:
            out = real_step(*args)
            if trainer.state.iteration == n:
                hold(point)
            return out

        trainer.train_step = step  # type: ignore[method-assign]
    elif kind == "write":
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if Path(src).name.startswith(".last.pt.") and trainer.state.iteration == n:
                hold(point)
            real_replace(src, dst)

        os.replace = replace  # type: ignore[assignment]
    elif kind == "metrics":
        real_append = cb.append_line

        def append_line(path: Path, line: str) -> None:
            real_append(path, line)
            if path.name == cb.METRICS_FILE and trainer.state.iteration == n * trainer.steps_per_epoch:
                hold(point)

        cb.append_line = append_line  # type: ignore[assignment]
    elif kind == "eval":
        real_eval = tr.evaluate_archs

        def evaluate_archs(net: Any, data: Any, archs: list, *args: Any, **kwargs: Any) -> Any:
            if trainer.state.iteration != n * trainer.steps_per_epoch:
                return real_eval(net, data, archs, *args, **kwargs)
            first = real_eval(net, data, archs[:1], *args, **kwargs)  # the real work, part done
            hold(point)
            return first

        tr.evaluate_archs = evaluate_archs  # type: ignore[assignment]
    elif kind != "none":
        raise SystemExit(f"unknown hold {point!r}")


def main() -> None:
    torch.set_num_threads(1)
    run, overrides, point, resume = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], len(sys.argv) > 4
    trainer = tr.Trainer(tiny_train_config(**overrides), run)
    install(trainer, point)
    trainer.fit(resume=resume)


if __name__ == "__main__":
    main()
