"""Every registered accuracy predictor: fits, ranks a known function, saves and loads without pickle, bit-equal."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.errors import PredictorError
from nasforge.predictors import PREDICTORS, load_predictor, make_predictor, regression_metrics, save_predictor
from nasforge.predictors.base import predictor_metadata
from nasforge.testing import tiny_space
from nasforge.testing.synthetic import SyntheticAccuracy

# quick settings for the slower models (their defaults are for real budgets)
OPTIONS = {
    "mlp": {"max_epochs": 100, "patience": 25},
    "ensemble": {"members": 2, "max_epochs": 50, "patience": 20},
    "gp": {"hyper_rows": 150, "max_iter": 30},
    "gbm": {"n_estimators": 100},
}


def _data():  # type: ignore[no-untyped-def]
    space = tiny_space("tiny-mbv3")
    fn = SyntheticAccuracy(space, seed=1, noise=0.05)
    rng = np.random.default_rng(0)
    train, test = space.sample_many(rng, 200), space.sample_many(rng, 100)
    return space, space.features(train), fn(train), space.features(test), fn(test)


FITTABLE = [k for k in PREDICTORS.names() if getattr(PREDICTORS.get(k), "fittable", True)]


@pytest.mark.parametrize("kind", FITTABLE)
def test_fit_ranks_save_load(kind, tmp_path):
    """(Kinds that are imported trained, not fitted — `fittable = False`, e.g. OFA's `ofa-mlp` — are tested
    where they are imported.)"""
    space, x, y, xt, yt = _data()
    model = make_predictor(kind, space.num_features, seed=0, **OPTIONS.get(kind, {}))
    model.fit(x, y)
    pred = model.predict(xt)
    assert pred.shape == (len(xt),) and np.all(np.isfinite(pred))
    assert regression_metrics(pred, yt)["kendall_tau"] > 0.5
    meta = predictor_metadata(space, checkpoint_sha256="0" * 64, dataset="synthetic", num_measurements=len(y))
    save_predictor(model, tmp_path / "p", meta)
    loaded = load_predictor(tmp_path / "p", space)
    np.testing.assert_array_equal(loaded.predict(xt), pred)
    assert loaded.kind == kind


@pytest.mark.parametrize("kind", FITTABLE)
def test_wrong_feature_width_is_refused(kind):
    space, x, y, _, _ = _data()
    model = make_predictor(kind, space.num_features, seed=0)
    with pytest.raises(PredictorError):
        model.fit(x[:, :-1], y)
