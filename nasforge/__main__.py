"""`python -m nasforge` runs the CLI."""

from nasforge.cli import main

main()
