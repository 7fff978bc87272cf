"""Conformance suites: what every registered entry of a kind must do, run over the whole registry.

Each module holds pytest tests parametrised over one registry (optuna's `optuna/testing/` is the model):
`families`, `blocks`, `engines`, `predictors`, `schedules`, `data_sources`, `timing_backends`. A new
entry — a family, a block kind, an engine, a plugin's predictor — is tested for free; nasforge's own
`tests/test_conformance.py` runs them all with

    from nasforge.testing.conformance.engines import *  # noqa: F403

and a plugin package can do the same in its own tests. Needs pytest (the `test` extra).
"""
