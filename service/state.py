"""The per-app service container that views reach through `services()`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from service.config import Config
from service.db import Database

if TYPE_CHECKING:
    from service.assigning import DefinitionCache
    from service.serving import ModelCache


@dataclass
class Services:
    """Long-lived objects of one app: its config, database and caches keyed by revision."""

    config: Config
    db: Database
    models: "ModelCache"
    definitions: "DefinitionCache"


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions["stickyloop"]  # type: ignore[no-any-return]
