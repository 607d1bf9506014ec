"""Tests of `bandits`."""
