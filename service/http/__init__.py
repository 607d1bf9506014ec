"""The HTTP layer: app factory, endpoint decorator, views, schemas, error mapping, OpenAPI and the CLI."""
