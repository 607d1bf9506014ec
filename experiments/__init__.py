"""Experiment definitions, hash assignment, reward schedules and statistics."""
