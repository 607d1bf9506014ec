"""Tests of `usecases`."""
