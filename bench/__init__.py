"""Benchmarks: scripts that print tables and write BENCHMARKS.md. Not tests: `make bench`."""
