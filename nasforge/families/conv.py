"""What the convolutional families (MobileNet, ResNet) share: a stage of conv blocks and their gene groups."""

from __future__ import annotations

from dataclasses import dataclass

from nasforge.families.base import StageSpec


@dataclass(frozen=True, kw_only=True)
class ConvStage(StageSpec):
    """A stage of conv blocks: its block kind, output channels, first block's stride, activation and SE; the
    kernel and expansion choices are its `block_choices` for the `kernel` and `expand` gene groups."""

    block: str
    channels: int
    stride: int
    act: str = "relu"
    se: bool = False
    width_slot: int | None = None  # the width gene that scales this stage's channels (ResNet)

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.choices("kernel"))

    @property
    def expand_ratios(self) -> tuple[float, ...]:
        return tuple(float(e) for e in self.choices("expand"))


def conv_stage(name: str, block: str, channels: int, stride: int, act: str, se: bool, depths: tuple[int, ...],
               kernel_sizes: tuple[int, ...], expand_ratios: tuple[float, ...], width_slot: int | None = None
               ) -> ConvStage:
    return ConvStage(name=name, depths=depths, block_choices=(("kernel", kernel_sizes), ("expand", expand_ratios)),
                     block=block, channels=channels, stride=stride, act=act, se=se, width_slot=width_slot)
