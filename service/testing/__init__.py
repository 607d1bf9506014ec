"""Helpers for running the real service in tests and benchmarks."""
