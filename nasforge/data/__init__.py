"""Data: one interface (`DataSource`) over an in-memory and a streaming source, and the dataset readers.

    source = open_source(DataSettings(dataset="imagefolder", data_dir="imagenet", loader="auto"),
                         resolution=224, device="cuda")
    for x, y in source.train_batches(epoch, batch_size=256, seed=0, rank=r, world_size=w): ...

`source.py` the interface, settings and selection; `memory.py` the decoded-in-memory source (and the
original `load_dataset` / `train_batch` / `eval_batches` / `calibration_batches` functions, unchanged);
`stream.py` the DataLoader-backed source; `datasets.py` the readers; `augment.py` the transforms.
"""

from __future__ import annotations

from nasforge.data.augment import AUTO_AUGMENTS, AugmentConfig
from nasforge.data.datasets import IMAGE_SUFFIXES, DatasetReader, ImageSet, decode_image_file
from nasforge.data.memory import (
    DataSplits,
    MemorySource,
    calibration_batches,
    eval_batches,
    load_dataset,
    train_batch,
)
from nasforge.data.source import (
    DATA_SOURCES,
    DATASETS,
    IMAGENET,
    Batch,
    Batches,
    DataSettings,
    DataSource,
    Normalization,
    batch_generator,
    decoded_bytes,
    epoch_order,
    open_source,
    steps_per_epoch,
)
from nasforge.data.stream import StreamSource

__all__ = [
    "AUTO_AUGMENTS", "DATASETS", "DATA_SOURCES", "IMAGENET", "IMAGE_SUFFIXES", "AugmentConfig", "Batch", "Batches",
    "DataSettings", "DataSource", "DataSplits", "DatasetReader", "ImageSet", "MemorySource", "Normalization",
    "StreamSource", "batch_generator", "calibration_batches", "decode_image_file", "decoded_bytes", "epoch_order",
    "eval_batches", "load_dataset", "open_source", "steps_per_epoch", "train_batch",
]
