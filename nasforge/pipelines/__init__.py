"""Whole-pipeline entry points that chain the stages: search from a config, and the quickstart."""
