"""Where the optional MovieLens latest-small ratings are: MOVIELENS_DIR, else next to the checkout."""
from __future__ import annotations

import os
from pathlib import Path

# The development and CI layout keeps datasets beside the repository, never inside it (licence).
MOVIELENS = Path(os.environ.get("MOVIELENS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens-small")
