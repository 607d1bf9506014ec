"""The long-lived objects one process's use cases share: config, database and bounded caches."""
from __future__ import annotations

from dataclasses import dataclass

from service.config import Config
from service.errors import HostCannot
from service.store.database import Database, unavailable_on_failure
from service.store.migrate import downgrade, schema_problem, upgrade
from service.usecases.experiment_cache import ExperimentCache
from service.usecases.keys import KeyVerifier
from service.usecases.serving import ModelCache


@dataclass
class Services:
    """One app's config, database and caches; every cache is keyed by an immutable revision or bounded in time."""

    config: Config
    db: Database
    models: ModelCache
    experiment_cache: ExperimentCache
    keys: KeyVerifier

    @classmethod
    def build(cls, config: Config) -> "Services":
        """Open the database and create empty caches."""
        db = Database(config.database_url, config.sqlite_busy_timeout_ms, config.pool_size)
        return cls(config=config, db=db, models=ModelCache(db, config.model_dir), experiment_cache=ExperimentCache(), keys=KeyVerifier(db))

    def unreachable(self) -> str | None:
        """Why the database cannot be reached, or None when it answers; HostCannot when it refuses this service by name."""
        try:
            with unavailable_on_failure():
                self.db.ping()
        except HostCannot:
            raise
        except Exception as exc:  # any other failure means "not ready"; the driver's own words, for the log
            failure = exc.__cause__ or exc
            return str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        return None

    def schema_problem(self) -> str | None:
        """Why this release cannot serve the database's schema (none, or an older one), or None; Unavailable when the database is."""
        with unavailable_on_failure():
            return schema_problem(self.db)

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Create or upgrade the schema; answer the revisions (before, after)."""
        return upgrade(self.db)

    def downgrade_schema(self, target: str) -> tuple[str | None, str]:
        """Take the schema back to an older revision; answer the revisions (before, after)."""
        return downgrade(self.db, target)

    def close(self) -> None:
        """Close every database connection this process holds."""
        self.db.dispose()
