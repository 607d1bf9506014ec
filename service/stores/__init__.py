"""Database access, one module per aggregate; the blueprints call these."""
