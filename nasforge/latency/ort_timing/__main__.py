"""`python -m ort_timing bundle.zip --out lut.json` from a bundle's extracted files (the zip runs itself)."""

import sys

from .runner import main

sys.exit(main())
