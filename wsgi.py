"""WSGI entry point: `gunicorn wsgi:app` and `flask --app wsgi ...`."""
import sys

from service.config import Config
from service.errors import HostCannot
from service.http.app import create_app

try:
    config = Config.from_env()
except ValueError as exc:  # a bad environment variable: one line naming it, not a traceback
    print(f"stickyloop: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

try:
    app = create_app(config)
except HostCannot as exc:  # a database this host cannot use (a folder it cannot make): said once, before any request
    print(f"stickyloop: {exc.message}", file=sys.stderr)
    raise SystemExit(2) from None
