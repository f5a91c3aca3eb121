"""The server's one settings object, read from ``LATLAB_*`` environment variables.

Built once in the entry point (``latlab server``, the quickstart, a test fixture) and passed
down; nothing reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from latlab.onnx_summary import MAX_NODES

__all__ = ["Settings"]

DEFAULT_DATA_DIR = Path("~/.latlab").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATLAB_", extra="ignore")

    #: Everything the embedded setup keeps: the SQLite file and the blob directory.
    data_dir: Path = DEFAULT_DATA_DIR
    #: SQLAlchemy URL; default ``sqlite:///<data_dir>/latlab.db``.
    database_url: str | None = None
    #: Content-addressed model store; default ``<data_dir>/blobs``.
    blob_dir: Path | None = None
    #: Keep blobs in this bucket of an S3-compatible store instead of ``blob_dir`` (what
    #: several server replicas share); created when missing.
    s3_bucket: str | None = None
    #: Key prefix inside the bucket (``latlab/`` keeps blobs under ``latlab/ab/cdef...``).
    s3_prefix: str = ""
    #: The store's URL for anything but AWS itself (MinIO: ``http://minio:9000``).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    #: Credentials; when unset, boto3's own chain (``AWS_*`` variables, profiles, IAM roles).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    #: ``path`` (MinIO and most S3-compatible stores), ``virtual`` or ``auto``.
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    #: Shared secret an agent presents once to register its device.
    enroll_key: SecretStr = SecretStr("")
    #: User API keys with read-write scope, comma-separated (``LATLAB_API_KEYS=key1,key2``).
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: Read-only API keys (``LATLAB_READ_API_KEYS``): every GET and the predict queries, no
    #: uploads, jobs, campaigns, LUTs, predictors or revocations.
    read_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    #: How long a dashboard sign-in lasts (seconds); the cookie holds no key, only a signature.
    dashboard_session_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    max_model_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    #: All files of one dataset import together (13 LatBench pickles are about 8 MB).
    max_import_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    #: Any other request body (JSON); counted while it streams in, like the uploads.
    max_json_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    #: Nodes of one uploaded model, subgraphs included.
    max_model_nodes: int = Field(default=MAX_NODES, gt=0)
    #: The largest tensor an uploaded model may declare (symbolic dims counted as 1): a model
    #: that would make an agent allocate more is refused at upload, before any agent runs it.
    max_tensor_bytes: int = Field(default=4 * 1024**3, gt=0)
    #: A claimed job's lease; agents extend it with heartbeats while they time.
    lease_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    #: A leased job's deadline is its config's ``deadline_s`` from the claim plus this (the
    #: agent stops the job at ``deadline_s`` by its own clock and then reports it): a result
    #: that comes later is refused and the job fails; the reaper fails a job past it.
    deadline_grace_s: float = Field(default=30.0, ge=0, le=3600)
    #: Longest a claim long-poll may wait for a job.
    claim_wait_max_s: float = Field(default=30.0, ge=0)
    #: A waiting claim re-checks the database at least this often (wake-ups come at once; the
    #: poll finds what a lost or misdirected wake-up missed).
    claim_poll_s: float = Field(default=2.0, gt=0)
    #: A device not heard from for this long is shown offline.
    offline_after_s: float = Field(default=90.0, gt=0)
    #: How often the lease reaper runs in the background.
    reap_every_s: float = Field(default=5.0, gt=0)
    #: The device canary (server/canary.py): before a device's next job it times the reference
    #: model when it has not with that job's runtime identity yet, after this many jobs, or
    #: after this many seconds; 0 and 0 turn it off.
    canary_every_jobs: int = Field(default=25, ge=0, le=1_000_000)
    canary_every_s: float = Field(default=300.0, ge=0)
    #: A finished campaign waits this long for the canary that closes its last window on a
    #: device (queued when its jobs are done) before it is checked without it.
    canary_close_wait_s: float = Field(default=120.0, ge=0)

    @field_validator(
        "s3_bucket",
        "s3_endpoint_url",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``LATLAB_S3_BUCKET=`` (as compose writes an unset ``${VAR:-}``) means no bucket."""
        return None if value == "" else value

    @field_validator("api_keys", "read_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def user_keys(self) -> list[SecretStr]:
        """Every user API key, read-only or read-write."""
        return [*self.api_keys, *self.read_api_keys]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'latlab.db'}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def upload_dir(self) -> Path:
        """Scratch space for files on their way into the blob store (on the blob directory's
        filesystem, so a local store moves them in; a bucket's are uploaded from here)."""
        if self.s3_bucket:
            return self.data_dir / "uploads"
        return self.resolved_blob_dir / ".uploads"
