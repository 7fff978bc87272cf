"""Other projects' formats mapped onto nasforge's own modules (timm's `checkpoint_filter_fn` idea).

One filter module per foreign project (`ofa.py`: Once-for-All's state dicts and arch dicts onto a nasforge
space, by the adapters of `ofa_families.py`), plus what builds on it (`ofa_predictor.py`: OFA's
accuracy predictors; `ofa_runs.py`: OFA's files as run folders and back). The tests prove outputs equal
against that project's own code. Nothing here imports the foreign project itself.
"""
