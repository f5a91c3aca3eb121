"""The latlab server: FastAPI endpoints -> services -> repositories (SQL); installed as latlab.server."""
