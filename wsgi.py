"""WSGI entry point: `gunicorn wsgi:app` and `flask --app wsgi ...`."""
import sys

from service.config import Config
from service.http.app import create_app

try:
    config = Config.from_env()
except ValueError as exc:  # a bad environment variable: one line naming it, not a traceback
    print(f"stickyloop: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

app = create_app(config)
