"""Child-process entry point for one training run: `python -m service.usecases.train_job VERSION`."""
from __future__ import annotations

import sys

from service.config import Config
from service.errors import Unavailable
from service.store.database import Database
from service.logs import configure_logging
from service.usecases.training_run import run_training


def main(argv: list[str]) -> int:
    """Train the named version; exit 1 when it failed, 2 when the environment or the database stopped it."""
    try:
        config = Config.from_env()
    except ValueError as exc:  # one line naming the variable, in the run's log, instead of a traceback
        print(f"stickyloop: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    db = Database(config.database_url, config.sqlite_busy_timeout_ms)
    try:
        result = run_training(db, config, argv[1])
    except Unavailable as exc:
        print(f"stickyloop: {exc.message}", file=sys.stderr)
        return 2
    return 0 if result.status in ("ready", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
