"""Benchmarks: datasets, the resumable runner, scorers and result tables (thesis Tables 6.2, 6.3)."""
