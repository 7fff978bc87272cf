"""The losses of supernet training."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KD loss: cross-entropy to soft targets at temperature T, scaled by T^2 (Hinton et al.)."""
    logp = F.log_softmax(logits.float() / temperature, dim=1)
    return -(target_probs * logp).sum(1).mean() * temperature**2
