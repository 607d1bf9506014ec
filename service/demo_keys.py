"""Print one fresh API key per role, for `make run`: `python -m service.demo_keys`."""
from __future__ import annotations

from service.auth import ROLES, create_key
from service.config import Config
from service.db import Database


def main() -> None:
    """Create and print the keys with a curl example."""
    config = Config.from_env()
    db = Database(config.database_url, config.sqlite_busy_timeout_ms)
    print("\nAPI keys for this demo (shown once; create more with `flask --app wsgi create-key --role ROLE`):")
    keys = {}
    for role in ROLES:
        _, raw = create_key(db, role, f"demo {role}")
        keys[role] = raw
        print(f"  {role:<10} {raw}")
    print("\nTry:")
    print(f"  curl -H 'Authorization: Bearer {keys['storefront']}' http://127.0.0.1:8000/v1/users/user-1/recommendations")
    print("  open http://127.0.0.1:8000/docs for every endpoint\n")
    db.dispose()


if __name__ == "__main__":
    main()
