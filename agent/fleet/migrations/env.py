"""Alembic's environment: run the migrations on the connection `agent.fleet.store.migrate` passes.

There is no alembic.ini and no URL here: the fleet migrates its own database at start-up, so the
connection (and with it SQLite or PostgreSQL) always comes from the fleet's config.
"""

from __future__ import annotations

from alembic import context

from agent.fleet.tables import metadata


def run_migrations() -> None:
    """Upgrade on the connection handed over in the Alembic config's attributes."""
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if hasattr(context, "config"):  # run by Alembic; merely importing the module (a contract test) does nothing
    run_migrations()
