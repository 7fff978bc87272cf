"""Each predictor recovers a known function of the OFA encoding; saving is exact and pickle-free."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from nasforge.errors import PredictorError, PredictorMismatchError
from nasforge.predictors import MODELS, load_predictor, make_predictor, regression_metrics, save_predictor
from nasforge.predictors.base import META_FILE, WEIGHTS_FILE, predictor_metadata
from nasforge.testing import tiny_space
from nasforge.testing.synthetic import SyntheticAccuracy

# Small settings keep each fit to a few seconds on 2 shared CPU cores.
FAST = {
    "mlp": {"max_epochs": 100, "patience": 25},
    "ensemble": {"members": 3, "max_epochs": 50, "patience": 20},
    "ridge": {},
    "gp": {"hyper_rows": 150, "max_iter": 30},
    "gbm": {"n_estimators": 200},
}


@pytest.fixture(scope="module")
def data():
    import torch

    torch.set_num_threads(1)
    space = tiny_space("tiny-mbv3")
    fn = SyntheticAccuracy(space, seed=3, noise=0.1, interaction=0.15)
    archs = list(dict.fromkeys(space.sample_many(np.random.default_rng(0), 900)))
    train, test = archs[:400], archs[-200:]
    return space, space.features(train), fn(train), space.features(test), fn(test)


@pytest.fixture(scope="module")
def fitted(data):
    space, xtr, ytr, _, _ = data
    out = {}
    for kind, opts in FAST.items():
        p = make_predictor(kind, space.num_features, seed=0, **opts)
        p.fit(xtr, ytr)
        out[kind] = p
    return out


def _meta(space, sha="a" * 64):
    return predictor_metadata(space, checkpoint_sha256=sha, dataset="synthetic", num_measurements=600)


@pytest.mark.parametrize("kind", list(FAST))
def test_recovers_synthetic_function(kind, data, fitted):
    _, _, _, xte, yte = data
    m = regression_metrics(fitted[kind].predict(xte), yte)
    assert m["kendall_tau"] > 0.9, m
    assert m["rmse"] < 1.0, m


def test_untrained_baseline_is_poor(data):
    """Guard against a too-easy benchmark: a random-feature-weight guess does not reach tau 0.9."""
    space, _, _, xte, yte = data
    guess = xte @ np.random.default_rng(9).normal(size=space.num_features)
    assert regression_metrics(guess, yte)["kendall_tau"] < 0.5


@pytest.mark.parametrize("kind", list(FAST))
def test_save_load_round_trip_is_exact_and_pickle_free(kind, data, fitted, tmp_path):
    space, _, _, xte, _ = data
    p = fitted[kind]
    save_predictor(p, tmp_path / "pred", _meta(space))
    assert sorted(f.name for f in (tmp_path / "pred").iterdir()) == sorted([WEIGHTS_FILE, META_FILE])
    doc = json.loads((tmp_path / "pred" / META_FILE).read_text())
    assert doc["model"] == kind and doc["metadata"]["space_fingerprint"] == space.fingerprint
    # Every member of the npz is a plain .npy that loads without pickle.
    with np.load(tmp_path / "pred" / WEIGHTS_FILE, allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object
    with zipfile.ZipFile(tmp_path / "pred" / WEIGHTS_FILE) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())
    q = load_predictor(tmp_path / "pred", space, checkpoint_sha256="a" * 64)
    np.testing.assert_array_equal(q.predict(xte), p.predict(xte))
    assert q.metadata["model"] == kind
    if hasattr(p, "predict_with_std"):
        m1, s1 = p.predict_with_std(xte)
        m2, s2 = q.predict_with_std(xte)
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("kind", list(FAST))
def test_batched_prediction_shape_and_dtype(kind, data, fitted):
    space = data[0]
    x = space.features(space.sample_many(np.random.default_rng(5), 10_000))
    y = fitted[kind].predict(x)
    assert y.shape == (10_000,) and y.dtype == np.float64 and np.all(np.isfinite(y))
    # Row order does not matter: predicting in pieces gives the same numbers.
    np.testing.assert_allclose(np.concatenate([fitted[kind].predict(x[:37]), fitted[kind].predict(x[37:])]), y,
                               rtol=1e-6, atol=1e-6)
    assert fitted[kind].predict(x[:0]).shape == (0,)
    with pytest.raises(PredictorError, match="width"):
        fitted[kind].predict(x[:, :-1])


def test_ensemble_spread_is_positive_and_larger_off_distribution(data, fitted):
    _, _, _, xte, _ = data
    mean, std = fitted["ensemble"].predict_with_std(xte)
    np.testing.assert_allclose(mean, fitted["ensemble"].predict(xte))
    assert np.all(std > 0)
    # All-ones rows (impossible one-hot) are far from the data: the members disagree more there.
    _, far = fitted["ensemble"].predict_with_std(np.ones((5, xte.shape[1]), dtype=np.float32))
    assert far.mean() > std.mean()


def test_gbm_export_matches_sklearn(data):
    from sklearn.ensemble import GradientBoostingRegressor

    space, xtr, ytr, xte, _ = data
    p = make_predictor("gbm", space.num_features, seed=4, n_estimators=50)
    p.fit(xtr, ytr)
    ref = GradientBoostingRegressor(n_estimators=50, learning_rate=0.05, max_depth=4, subsample=0.8,
                                    random_state=4).fit(xtr, ytr)
    np.testing.assert_allclose(p.predict(xte), ref.predict(xte), rtol=0, atol=1e-9)


def test_gp_fast_mean_matches_sklearn(data, fitted):
    _, _, _, xte, _ = data
    gp = fitted["gp"]
    np.testing.assert_allclose(gp.predict(xte), gp.predict_with_std(xte)[0], rtol=0, atol=1e-8)  # sklearn predict
    mean, std = gp.predict_with_std(xte)
    np.testing.assert_allclose(mean, gp.predict(xte), rtol=0, atol=1e-8)
    assert np.all(std > 0)


def test_mlp_is_deterministic_for_a_seed(data):
    space, xtr, ytr, xte, _ = data
    preds = []
    for _ in range(2):
        p = make_predictor("mlp", space.num_features, seed=11, max_epochs=20)
        p.fit(xtr, ytr)
        preds.append(p.predict(xte))
    np.testing.assert_array_equal(preds[0], preds[1])


def test_mismatched_space_or_checkpoint_is_refused(data, fitted, tmp_path):
    space = data[0]
    save_predictor(fitted["ridge"], tmp_path / "p", _meta(space, sha="b" * 64))
    other = tiny_space("tiny-resnet")
    with pytest.raises(PredictorMismatchError, match="built for space 'tiny-mbv3'") as exc:
        load_predictor(tmp_path / "p", other)
    assert "\n" not in str(exc.value)
    with pytest.raises(PredictorMismatchError, match="supernet checkpoint bbbbbbbbbbbb") as exc:
        load_predictor(tmp_path / "p", space, checkpoint_sha256="c" * 64)
    assert "\n" not in str(exc.value)
    # Same space name and family but different build options: the fingerprint differs, so refused.
    with pytest.raises(PredictorMismatchError):
        load_predictor(tmp_path / "p", space.with_options(num_classes=100))
    load_predictor(tmp_path / "p", space, checkpoint_sha256="b" * 64)


def test_tampered_or_missing_files_are_clear_errors(data, fitted, tmp_path):
    space = data[0]
    save_predictor(fitted["ridge"], tmp_path / "p", _meta(space))
    (tmp_path / "p" / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(PredictorError, match="do not match"):
        load_predictor(tmp_path / "p", space)
    with pytest.raises(PredictorError, match="build-predictor"):
        load_predictor(tmp_path / "nothing", space)


def test_every_registered_model_is_tested():
    # kinds that are imported, not fitted (`fittable = False`: OFA's ofa-mlp) are tested where they are imported
    assert set(FAST) == {kind for kind in MODELS if getattr(MODELS.get(kind), "fittable", True)}


def test_unknown_model_kind():
    with pytest.raises(PredictorError, match="unknown predictor model 'xgb'"):
        make_predictor("xgb", 10)
