"""Benchmarks: `ssdzoo benchmark` and the seed's algorithms it compares against."""
