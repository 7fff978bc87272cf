"""nasforge: once-for-all neural architecture search.

Core types every stage passes along: `ArchConfig` (one subnet), `SearchSpace` (a space
loaded from YAML, the only owner of the encoding) and `LayerSpec` (one static block).
"""

from nasforge.arch import ArchConfig
from nasforge.errors import NasforgeError
from nasforge.layers import LayerSpec
from nasforge.space import SearchSpace, list_spaces, load_space

__version__ = "0.1.0"

__all__ = ["ArchConfig", "LayerSpec", "NasforgeError", "SearchSpace", "__version__", "list_spaces", "load_space"]
