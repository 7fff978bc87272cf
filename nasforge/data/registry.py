"""The data registries, torch-free so the CLI can list their choices without importing torch.

`DATASETS`: readers of the datasets nasforge knows (`nasforge.data.datasets`); `DATA_SOURCES`: the ways
to serve them (`memory`, `stream`). Each maps its built-in modules to the names they register, so
listing costs nothing and `get(name)` imports only what it needs.
"""

from __future__ import annotations

from typing import Any

from nasforge.errors import DataError
from nasforge.registry import Registry

LOADERS_AUTO = "auto"

DATASETS: Registry[Any] = Registry(
    "dataset", modules={"nasforge.data.datasets": ("digits", "cifar10", "imagefolder")}, error=DataError)
DATA_SOURCES: Registry[Any] = Registry(
    "data source", modules={"nasforge.data.memory": ("memory",), "nasforge.data.stream": ("stream",)},
    plural="data_sources")


class LoaderChoices:
    """`auto` plus every registered data source (the `loader` setting's choices)."""

    kind = "loader"

    def names(self) -> tuple[str, ...]:
        return (LOADERS_AUTO, *DATA_SOURCES.names())


LOADER_CHOICES = LoaderChoices()
