"""Alembic environment: runs on the engine the cloud passes in (``config.attributes``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cloud.describe.fts import include_object
from cloud.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # plain `alembic` command line: -x url=...
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,  # full-text objects are engine-specific DDL (0002)
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER via table copies
    )
    context.run_migrations()
