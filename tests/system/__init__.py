"""Tests of `system`."""
