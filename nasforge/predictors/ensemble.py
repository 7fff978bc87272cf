"""Deep ensemble of OFA-style MLPs: mean prediction plus a spread the Bayesian search can use.

Members differ by seed (init, shuffling, inner early-stopping split), as in deep ensembles; the
spread grows away from the measured archs. Bootstrap resampling is optional: on the synthetic
benchmark it cost accuracy (each member sees ~63% of the rows) for little gain in spread.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasforge.predictors.base import PREDICTORS, PredictorBase
from nasforge.predictors.mlp import MLPPredictor


@PREDICTORS.register("ensemble", summary="five MLPs from different seeds, averaged")
class EnsemblePredictor(PredictorBase):
    kind = "ensemble"

    def __init__(self, num_features: int, *, seed: int = 0, members: int = 5, bootstrap: bool = False, **mlp: Any):
        super().__init__(num_features)
        self.seed, self.bootstrap = int(seed), bool(bootstrap)
        self.mlp_options = dict(mlp)
        self.members = [
            MLPPredictor(num_features, seed=self.seed * 1000 + i, **self.mlp_options) for i in range(int(members))
        ]

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> None:
        x, y = self.check_fit_inputs(features, accuracy)
        rng = np.random.default_rng(self.seed)
        for member in self.members:
            idx = rng.integers(0, len(x), len(x)) if self.bootstrap else np.arange(len(x))
            member.fit(x[idx], y[idx])
        self.fitted = True

    def _all(self, x: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(x) for m in self.members])

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return self._all(x).mean(axis=0)

    def predict_with_std(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over members (accuracy points), each shape (n,)."""
        x = self.check_features(features)
        preds = self._all(x)
        return preds.mean(axis=0), preds.std(axis=0)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params: dict[str, Any] = {
            "num_features": self.num_features,
            "seed": self.seed,
            "members": len(self.members),
            "bootstrap": self.bootstrap,
            "mlp": self.mlp_options,
            "member_params": [],
        }
        arrays: dict[str, np.ndarray] = {}
        for i, member in enumerate(self.members):
            p, a = member.state()
            params["member_params"].append(p)
            arrays.update({f"m{i}.{k}": v for k, v in a.items()})
        return params, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> EnsemblePredictor:
        model = cls(
            int(params["num_features"]),
            seed=int(params["seed"]),
            members=0,
            bootstrap=bool(params["bootstrap"]),
            **params.get("mlp", {}),
        )
        for i, p in enumerate(params["member_params"]):
            prefix = f"m{i}."
            sub = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            model.members.append(MLPPredictor.from_state(p, sub))
        model.fitted = True
        return model
