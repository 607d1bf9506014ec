"""The HTTP service: app factory, blueprints, storage, auth and the command line."""
