"""Supernet training: shrink strategies, the one training loop, checkpoints, BN recalibration, runs."""
