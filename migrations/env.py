"""Alembic environment: runs on the engine the server hands over (``config.attributes``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from latlab.server.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # the alembic CLI: a URL in alembic's own config
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("latlab migrations run online only")
run_migrations_online()
