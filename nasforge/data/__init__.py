"""Data: one interface (`DataSource`) over an in-memory and a streaming source, and the dataset readers.

    source = open_source(DataSettings(dataset="imagefolder", data_dir="imagenet", loader="auto"),
                         resolution=224, device="cuda")
    for x, y in source.train_batches(epoch, batch_size=256, seed=0, rank=r, world_size=w): ...

`source.py` the interface, settings and selection; `memory.py` the decoded-in-memory source (and the
original `load_dataset` / `train_batch` / `eval_batches` / `calibration_batches` functions, unchanged);
`stream.py` the DataLoader-backed source; `datasets.py` the readers; `augment.py` the transforms;
`registry.py` the (torch-free) registries; `batch.py` the `Batch(inputs, targets)` every source yields;
`inputs.py` the input kinds (images, `TokenInputs`) that move, count and adapt any inputs to a subnet.
Names are imported on first use, so listing the registries (the CLI's help) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "nasforge.data.registry": ("DATASETS", "DATA_SOURCES", "LOADER_CHOICES"),
    "nasforge.data.augment": ("AUTO_AUGMENTS", "AugmentConfig"),
    "nasforge.data.datasets": ("IMAGE_SUFFIXES", "DatasetReader", "ImageSet", "decode_image_file"),
    "nasforge.data.memory": ("DataSplits", "MemorySource", "as_source", "calibration_batches", "eval_batches",
                             "load_dataset", "train_batch"),
    "nasforge.data.batch": ("Batch",),
    "nasforge.data.inputs": ("INPUT_KINDS", "TokenInputs"),
    "nasforge.data.source": ("IMAGENET", "Batches", "DataSettings", "DataSource", "Normalization",
                             "batch_generator", "decoded_bytes", "epoch_order", "open_source", "steps_per_epoch"),
    "nasforge.data.stream": ("StreamSource",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nasforge.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
