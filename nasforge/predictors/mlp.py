"""OFA-style MLP accuracy predictor: one-hot features -> 3 hidden layers of 400 (ReLU) -> accuracy.

As in Once-for-All the output is a bias-free linear layer plus a base-accuracy offset; here the
offset and scale come from standardising the targets (mean / std of the training accuracies), which
lets one learning rate work for any accuracy range. Training is Adam with early stopping on an
inner split, deterministic for a seed (own `torch.Generator` for init, shuffling and the split).
Runs on CPU: a few thousand rows train in seconds and 10,000 rows predict in milliseconds.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.predictors.base import PREDICTORS, PredictorBase


def build_mlp(num_features: int, hidden: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = num_features
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, 1, bias=False))
    return nn.Sequential(*mods)


def _init(net: nn.Sequential, gen: torch.Generator) -> None:
    """PyTorch's default Linear init, drawn from our own generator (no global RNG)."""
    for mod in net:
        if isinstance(mod, nn.Linear):
            bound = 1.0 / float(np.sqrt(mod.in_features))
            with torch.no_grad():
                mod.weight.uniform_(-bound, bound, generator=gen)
                if mod.bias is not None:
                    mod.bias.uniform_(-bound, bound, generator=gen)


def _flush_tiny(net: nn.Module) -> None:
    """Zero weights below float32's normal range: denormals make CPU matmuls ~30x slower."""
    with torch.no_grad():
        for p in net.parameters():
            p.masked_fill_(p.abs() < _TINY, 0.0)


_TINY = 1e-30


@PREDICTORS.register("mlp", summary="Once-for-All's MLP: one-hot features -> 3 x 400 ReLU -> accuracy")
class MLPPredictor(PredictorBase):
    """The default predictor (OFA's architecture)."""

    kind = "mlp"

    def __init__(
        self,
        num_features: int,
        *,
        seed: int = 0,
        hidden: int = 400,
        layers: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        batch_size: int = 64,
        max_epochs: int = 500,
        patience: int = 60,
        inner_val: float = 0.1,
    ) -> None:
        super().__init__(num_features)
        self.seed = int(seed)
        self.hidden, self.layers = int(hidden), int(layers)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.batch_size, self.max_epochs, self.patience = int(batch_size), int(max_epochs), int(patience)
        self.inner_val = float(inner_val)
        self.net = build_mlp(self.num_features, self.hidden, self.layers)
        self.y_mean, self.y_std = 0.0, 1.0
        self.epochs_trained = 0

    # ------------------------------------------------------------------ fitting
    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> None:
        x_np, y_np = self.check_fit_inputs(features, accuracy)
        gen = torch.Generator().manual_seed(self.seed)
        _init(self.net, gen)
        self.y_mean = float(y_np.mean())
        self.y_std = float(y_np.std()) or 1.0
        x = torch.from_numpy(x_np)
        y = torch.from_numpy(((y_np - self.y_mean) / self.y_std).astype(np.float32))
        n = len(x)
        n_val = int(round(n * self.inner_val)) if n >= 20 else 0
        order = torch.randperm(n, generator=gen)
        val_idx, tr_idx = order[:n_val], order[n_val:]
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best = (float("inf"), copy.deepcopy(self.net.state_dict()), 0)
        self.net.train()
        for epoch in range(self.max_epochs):
            perm = tr_idx[torch.randperm(len(tr_idx), generator=gen)]
            for start in range(0, len(perm), self.batch_size):
                idx = perm[start : start + self.batch_size]
                loss = nn.functional.mse_loss(self.net(x[idx]).squeeze(-1), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                _flush_tiny(self.net)
            if n_val:
                with torch.no_grad():
                    val = float(nn.functional.mse_loss(self.net(x[val_idx]).squeeze(-1), y[val_idx]))
                if val < best[0]:
                    best = (val, copy.deepcopy(self.net.state_dict()), epoch + 1)
                elif epoch + 1 - best[2] >= self.patience:
                    break
        if n_val:
            self.net.load_state_dict(best[1])
            self.epochs_trained = best[2]
        else:
            self.epochs_trained = self.max_epochs
        self.net.eval()
        self.fitted = True

    def _predict(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x)).squeeze(-1).double().numpy()
        return out * self.y_std + self.y_mean

    # ------------------------------------------------------------------ state
    def hyperparams(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "seed": self.seed,
            "hidden": self.hidden,
            "layers": self.layers,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "inner_val": self.inner_val,
        }

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        arrays["y_mean"] = np.array(self.y_mean)
        arrays["y_std"] = np.array(self.y_std)
        return {**self.hyperparams(), "epochs_trained": self.epochs_trained}, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLPPredictor:
        params = dict(params)
        epochs = int(params.pop("epochs_trained", 0))
        num_features = int(params.pop("num_features"))
        model = cls(num_features, **params)
        sd = {k[len("net.") :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        model.net.load_state_dict(sd)
        model.net.eval()
        model.y_mean, model.y_std = float(arrays["y_mean"]), float(arrays["y_std"])
        model.epochs_trained = epochs
        model.fitted = True
        return model
