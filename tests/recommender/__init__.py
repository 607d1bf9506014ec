"""Tests of `recommender`."""
