"""Child-process entry point for one training run: `python -m service.usecases.train_job VERSION`."""
from __future__ import annotations

import sys

from service.config import Config
from service.store.database import Database
from service.logs import configure_logging
from service.usecases.model_training import run_training


def main(argv: list[str]) -> int:
    """Train the named version; exit 1 when it failed."""
    config = Config.from_env()
    configure_logging(config.log_level)
    db = Database(config.database_url, config.sqlite_busy_timeout_ms)
    result = run_training(db, config, argv[1])
    return 0 if result.status == "ready" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
