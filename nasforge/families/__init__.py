"""Block families: how a YAML space of one family is parsed, laid out and built.

A family turns a space's YAML into stages (`parse`), an arch into its static layers
(`layers`), and a space into an elastic supernet (`supernet`, imports torch lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nasforge.arch import ArchConfig
    from nasforge.layers import LayerSpec
    from nasforge.space import ParsedSpace, SearchSpace


class Family(Protocol):
    name: str

    def parse(self, raw: dict[str, Any], source: str) -> ParsedSpace: ...

    def layers(self, space: SearchSpace, arch: ArchConfig, num_classes: int) -> list[LayerSpec]: ...

    def supernet(self, space: SearchSpace) -> Any: ...


def _families() -> dict[str, Family]:
    from nasforge.families.mobilenetv3 import MobileNetV3Family
    from nasforge.families.resnet import ResNetFamily

    return {f.name: f for f in (MobileNetV3Family(), ResNetFamily())}


FAMILIES: dict[str, Family] = _families()


def get_family(name: str) -> Family:
    return FAMILIES[name]
