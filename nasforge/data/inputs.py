"""Input kinds: what a batch's inputs are (images, token ids with masks) and the operations every consumer needs.

The trainer, evaluation, BN recalibration, predictor measurement and finetuning hold a batch's inputs
without knowing what they are: moving them to a device, counting them, taking a rank's share, pinning
them and adapting them to a subnet (`adapt`: images are resized to the arch's resolution, token
sequences cropped or padded to the sequence length its `resolution` gene gives) all go through the
input kind registered for the inputs' type. A new modality is one registered kind, not an `if` in
each consumer.

    x = adapt(x, arch.resolution, channels_last=True)   # whatever x is
    n = batch_size(x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from nasforge.errors import DataError
from nasforge.registry import Registry


class InputKind(Protocol):
    """The operations on one kind of inputs; `type` is the Python type its inputs have."""

    type: type

    def adapt(self, inputs: Any, resolution: int) -> Any: ...  # to a subnet whose resolution gene is `resolution`
    def layout(self, inputs: Any, channels_last: bool) -> Any: ...  # the memory format the forward wants
    def to(self, inputs: Any, device: torch.device | str, non_blocking: bool) -> Any: ...
    def size(self, inputs: Any) -> int: ...  # samples in the batch
    def take(self, inputs: Any, index: slice | torch.Tensor) -> Any: ...  # samples `index` of the batch
    def pin(self, inputs: Any) -> Any: ...  # in page-locked host memory (fast, asynchronous copies to CUDA)
    def example(self, n: int, resolution: int, generator: torch.Generator) -> Any: ...  # for conformance suites
    def tensors(self, inputs: Any) -> tuple[torch.Tensor, ...]: ...  # every tensor of the inputs (comparisons)


INPUT_KINDS: Registry[Any] = Registry("input kind", error=DataError, plural="input_kinds")


# ---------------------------------------------------------------------------- images
def resize_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear resize of an NCHW float batch (the supernet's elastic resolution, `supernet.resize_to`)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


@INPUT_KINDS.register("image", summary="NCHW float tensor; adapted by bilinear resize to the arch's resolution")
class ImageKind:
    type = torch.Tensor

    def adapt(self, inputs: torch.Tensor, resolution: int) -> torch.Tensor:
        return resize_images(inputs, resolution)

    def layout(self, inputs: torch.Tensor, channels_last: bool) -> torch.Tensor:
        return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs

    def to(self, inputs: torch.Tensor, device: torch.device | str, non_blocking: bool) -> torch.Tensor:
        return inputs.to(device, non_blocking=non_blocking)

    def size(self, inputs: torch.Tensor) -> int:
        return int(inputs.shape[0])

    def take(self, inputs: torch.Tensor, index: slice | torch.Tensor) -> torch.Tensor:
        return inputs[index]

    def pin(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.pin_memory()

    def example(self, n: int, resolution: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, 3, resolution + 3, resolution + 1, generator=generator)

    def tensors(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (inputs,)


# ---------------------------------------------------------------------------- token sequences
@dataclass(frozen=True)
class TokenInputs:
    """A batch of token sequences: ids (N, L) int64 and an attention mask (N, L), 1 where a token is real."""

    ids: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.ids.dim() != 2 or self.ids.shape != self.mask.shape:
            raise DataError(f"token inputs: ids {tuple(self.ids.shape)} and mask {tuple(self.mask.shape)} "
                            "must both be (batch, length)")

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


@INPUT_KINDS.register("tokens", summary="token ids + attention mask; adapted by crop/pad to the sequence length")
class TokenKind:
    """Sequences adapted to an arch by keeping the first `resolution` tokens, or padding with masked id-0 tokens."""

    type = TokenInputs

    def adapt(self, inputs: TokenInputs, resolution: int) -> TokenInputs:
        n = inputs.length
        if n == resolution:
            return inputs
        if n > resolution:
            return TokenInputs(inputs.ids[:, :resolution], inputs.mask[:, :resolution])
        pad = (0, resolution - n)
        return TokenInputs(F.pad(inputs.ids, pad), F.pad(inputs.mask, pad))

    def layout(self, inputs: TokenInputs, channels_last: bool) -> TokenInputs:
        return inputs

    def to(self, inputs: TokenInputs, device: torch.device | str, non_blocking: bool) -> TokenInputs:
        return TokenInputs(inputs.ids.to(device, non_blocking=non_blocking),
                           inputs.mask.to(device, non_blocking=non_blocking))

    def size(self, inputs: TokenInputs) -> int:
        return int(inputs.ids.shape[0])

    def take(self, inputs: TokenInputs, index: slice | torch.Tensor) -> TokenInputs:
        return TokenInputs(inputs.ids[index], inputs.mask[index])

    def pin(self, inputs: TokenInputs) -> TokenInputs:
        return TokenInputs(inputs.ids.pin_memory(), inputs.mask.pin_memory())

    def example(self, n: int, resolution: int, generator: torch.Generator) -> TokenInputs:
        length = resolution + 2
        ids = torch.randint(1, 100, (n, length), generator=generator)
        real = torch.randint(1, length + 1, (n, 1), generator=generator)
        mask = (torch.arange(length)[None, :] < real).to(torch.int64)
        return TokenInputs(ids * mask, mask)

    def tensors(self, inputs: TokenInputs) -> tuple[torch.Tensor, ...]:
        return (inputs.ids, inputs.mask)


# ---------------------------------------------------------------------------- dispatch
_BY_TYPE: dict[type, Any] = {}


def kind_of(inputs: Any) -> InputKind:
    """The registered kind whose `type` the inputs are (nearest base class first); one-line DataError if none."""
    kind = _BY_TYPE.get(type(inputs))
    if kind is not None:
        return kind  # type: ignore[no-any-return]
    types = {INPUT_KINDS.get(name).type: name for name in INPUT_KINDS.names()}
    for base in type(inputs).__mro__:
        if base in types:
            kind = _BY_TYPE[type(inputs)] = INPUT_KINDS.get(types[base])()
            return kind  # type: ignore[no-any-return]
    raise DataError(f"no input kind for {type(inputs).__name__} inputs; registered: {', '.join(INPUT_KINDS.names())}")


def adapt(inputs: Any, resolution: int, *, channels_last: bool = False) -> Any:
    """`inputs` as a subnet with resolution gene `resolution` takes them, in the memory format the forward wants."""
    kind = kind_of(inputs)
    return kind.layout(kind.adapt(inputs, resolution), channels_last)


def to_device(inputs: Any, device: torch.device | str, *, non_blocking: bool = False) -> Any:
    return kind_of(inputs).to(inputs, device, non_blocking)


def batch_size(inputs: Any) -> int:
    return kind_of(inputs).size(inputs)


def take(inputs: Any, index: slice | torch.Tensor) -> Any:
    return kind_of(inputs).take(inputs, index)


def shard(inputs: Any, rank: int, world_size: int) -> Any:
    """This rank's share `[rank::world_size]`, the slice `DistContext.shard` and the sources take."""
    return inputs if world_size == 1 else take(inputs, slice(rank, None, world_size))


def pin(inputs: Any) -> Any:
    return kind_of(inputs).pin(inputs)


def same_inputs(a: Any, b: Any) -> bool:
    """Equal kinds and every tensor equal (bit for bit): how tests compare batches of any kind."""
    ka, kb = kind_of(a), kind_of(b)
    return type(ka) is type(kb) and all(torch.equal(x, y) for x, y in zip(ka.tensors(a), kb.tensors(b), strict=True))


__all__ = ["INPUT_KINDS", "ImageKind", "InputKind", "TokenInputs", "TokenKind", "adapt", "batch_size", "kind_of",
           "pin", "resize_images", "same_inputs", "shard", "take", "to_device"]
