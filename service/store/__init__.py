"""The store: every SQL statement, one module per aggregate, returning records and raising domain errors."""
