"""Alembic migrations of the latlab server database (the server upgrades to head on start)."""
