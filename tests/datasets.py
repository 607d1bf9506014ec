"""Where the optional MovieLens latest-small ratings are: the folder MOVIELENS_DIR names (see the README's "Data")."""
from __future__ import annotations

import os
from pathlib import Path

# Unset, it names no folder, and the tests that need the data are skipped. The licence keeps the data
# out of this repository; `.ci/run` points it at the copy the project's CI keeps beside the checkout.
MOVIELENS = Path(os.environ["MOVIELENS_DIR"]) if os.environ.get("MOVIELENS_DIR") else Path("MOVIELENS_DIR is not set")
