"""Persistence: database engine, ORM models, migrations and shared runtime state."""
