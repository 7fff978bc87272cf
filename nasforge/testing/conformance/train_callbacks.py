"""Every registered training callback: built from a config (or None where the config asks none), hooks callable
in a real (tiny) run, and `config_callbacks` keeps the checkpoint writer after every other registered callback."""

from __future__ import annotations

import pytest

from nasforge.testing.train import tiny_train_config
from nasforge.train.callbacks import TRAIN_CALLBACKS, CheckpointWriter, TrainCallback, config_callbacks


def _config_asking_for_everything(tmp_path):  # type: ignore[no-untyped-def]
    return tiny_train_config(epochs=1, logging__tensorboard=str(tmp_path / "tb"))


@pytest.mark.parametrize("name", TRAIN_CALLBACKS.names())
def test_callback_builds_from_config(name, tmp_path):
    cls = TRAIN_CALLBACKS.get(name)
    made = cls.from_config(_config_asking_for_everything(tmp_path))
    assert isinstance(made, TrainCallback) and isinstance(made, cls)
    plain = cls.from_config(tiny_train_config())
    assert plain is None or isinstance(plain, cls)  # an optional callback stays out of a run that asks none


def test_config_callbacks_order(tmp_path):
    made = config_callbacks(_config_asking_for_everything(tmp_path))
    assert [type(c) for c in made] == [TRAIN_CALLBACKS.get(n) for n in TRAIN_CALLBACKS.names()]
    assert isinstance(made[-1], CheckpointWriter)  # logs are on disk before the checkpoint that covers them


@pytest.mark.parametrize("name", TRAIN_CALLBACKS.names())
def test_callback_survives_a_run(name, tmp_path):
    from nasforge.train.trainer import Trainer

    cfg = _config_asking_for_everything(tmp_path)
    trainer = Trainer(cfg, tmp_path / "run", callbacks=())
    trainer.callbacks = [c for c in trainer.callbacks if isinstance(c, TRAIN_CALLBACKS.get(name))]
    result = trainer.fit()
    assert result.finished and len(result.metrics) == 1


__all__ = ["test_callback_builds_from_config", "test_callback_survives_a_run", "test_config_callbacks_order"]
