"""Use cases: one user action each, orchestrating the store and the domain packages; no HTTP, no SQL."""
