"""Other projects' formats mapped onto nasforge's own modules (timm's `checkpoint_filter_fn` idea).

One module per foreign project; each maps that project's state dicts and arch dicts onto a nasforge
space, and the tests prove outputs equal against that project's own code. Nothing here imports the
foreign project itself: the mapping is data plus small per-family hooks.
"""
