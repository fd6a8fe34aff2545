"""Alembic revisions, oldest first: each one is how a released schema changes into the next."""
