"""Benchmarks that print the speed and quality figures of the pipeline (never timed tests)."""
