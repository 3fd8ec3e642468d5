"""Benchmarks, kept out of the test run: `python -m bench <name>` (see bench/__main__.py)."""
