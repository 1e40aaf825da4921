"""Benchmarks: scripts that print figures (run them directly, e.g. `python benchmarks/audit.py`)."""
