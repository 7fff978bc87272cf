"""Block families: how a space YAML of one family is read, encoded, laid out as layers and built.

`FAMILIES` is the registry (`FAMILIES.get("mobilenetv3")`); `nasforge.families.base` says what a
family provides. Adding a family is one module with one `@FAMILIES.register(...)` class, listed in
the registry's built-in modules or installed as a `nasforge.families` entry point.
"""

from nasforge.families.base import FAMILIES, Family, ParsedSpace, PlacedLayer, StageSpec
from nasforge.genes import Gene, GeneGroup

__all__ = ["FAMILIES", "Family", "Gene", "GeneGroup", "ParsedSpace", "PlacedLayer", "StageSpec"]
