"""The Alembic migration history of the fleet database (run by `agent.fleet.store.migrate`)."""
