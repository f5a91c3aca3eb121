"""SQLAlchemy 2 tables. Migrations in ``migrations/`` create exactly these (a test checks it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Dataset",
    "DatasetArch",
    "DatasetEntry",
    "Device",
    "Job",
    "Lut",
    "LutKernel",
    "Measurement",
    "Model",
    "OpMeasurement",
    "Predictor",
    "core_table",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back tz-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def core_table(entity: type[Base]) -> Table:
    """The Core table of a mapped class, for statements that skip the ORM."""
    return cast(Table, entity.__table__)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    descriptor: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: "agent" (registered, runs jobs) or "imported" (a device of a published dataset: it has
    #: measurements but no agent and no usable token).
    source: Mapped[str] = mapped_column(String(16), server_default="agent")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex
    format: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_created_at", "state", "created_at"),
        # a device's last canary job with a runtime identity (server/canary.py)
        Index("ix_jobs_device_purpose", "device_id", "purpose", "runtime_identity", "created_at"),
        # Identical pending requests are one job: enforced by the database, not by luck.
        Index(
            "uq_jobs_pending_dedup_key",
            "dedup_key",
            unique=True,
            sqlite_where=text("state IN ('queued', 'leased')"),
            postgresql_where=text("state IN ('queued', 'leased')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), index=True)
    selector: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: The config's runtime identity in columns (latlab.runtimes.ProtocolConfig): a claim
    #: matches runtime and provider to the device's in SQL, without reading every config.
    runtime: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(100))
    runtime_identity: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(64))
    #: "measure" (a user's, campaign's or LUT's job) or "canary" (the device's reference model,
    #: queued by the server every so often: server/canary.py).
    purpose: Mapped[str] = mapped_column(String(16), server_default="measure", default="measure")
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: When the lease's time is up whatever the heartbeats say (leased at + the config's
    #: ``deadline_s`` + the server's grace): a later result is refused and the job fails.
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    measurement: Mapped[Measurement | None] = relationship(
        back_populates="job", lazy="raise", uselist=False
    )


class Measurement(Base):
    __tablename__ = "measurements"
    __table_args__ = (
        Index("ix_measurements_model_device", "model_id", "device_id"),
        # a device's measurements with one runtime identity, canaries apart, in time order
        Index(
            "ix_measurements_device_identity_purpose",
            "device_id",
            "runtime_identity",
            "purpose",
            "created_at",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # One measurement per job: a repeated upload cannot add a second row. Imported rows
    # (published datasets) have no job and no model file.
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), unique=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"))
    #: "measured" by an agent here, or "imported" from a published dataset (no raw samples).
    source: Mapped[str] = mapped_column(String(16), server_default="measured")
    #: Its job's purpose: "measure" or "canary" (imports: "measure").
    purpose: Mapped[str] = mapped_column(String(16), server_default="measure", default="measure")
    #: Where an imported number comes from and which statistic it is.
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    runtime: Mapped[str] = mapped_column(String(100))
    runtime_version: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(100))
    threads: Mapped[int] = mapped_column(Integer)
    protocol_version: Mapped[str] = mapped_column(String(20))
    agent_version: Mapped[str] = mapped_column(String(50))
    input_shapes: Mapped[dict[str, Any]] = mapped_column(JsonType)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: ``config``'s runtime identity key (its job's); None for an imported number.
    runtime_identity: Mapped[str | None] = mapped_column(String(64), nullable=True)
    warmup_n: Mapped[int] = mapped_column(Integer)
    warmup_total_ms: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    median_ms: Mapped[float] = mapped_column(Float)
    mean_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    std_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p10_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p90_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    iqr_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: latlab.quality's assessment (MeasurementQuality); NULL for imports and older rows.
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    verdict_rule: Mapped[str | None] = mapped_column(String(300), nullable=True)
    ci_low_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_high_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ci_halfwidth_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    cv_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    drift_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_ms: Mapped[list[float]] = mapped_column(JsonType)
    timing_wall_s: Mapped[float] = mapped_column(Float)
    op_profile: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    job: Mapped[Job] = relationship(back_populates="measurement", lazy="raise")
    ops: Mapped[list[OpMeasurement]] = relationship(
        back_populates="measurement", lazy="raise", order_by="OpMeasurement.seq"
    )


class OpMeasurement(Base):
    __tablename__ = "op_measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    measurement_id: Mapped[int] = mapped_column(
        ForeignKey("measurements.id", ondelete="CASCADE"), index=True
    )
    #: Execution order within the measurement.
    seq: Mapped[int] = mapped_column(Integer)
    node_name: Mapped[str] = mapped_column(String(1000))
    op_type: Mapped[str] = mapped_column(String(200), index=True)
    provider: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dur_us: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)
    source_nodes: Mapped[list[str]] = mapped_column(JsonType)

    measurement: Mapped[Measurement] = relationship(back_populates="ops", lazy="raise")


class Dataset(Base):
    """A set of architectures of one space measured (or imported) on a set of devices."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    space: Mapped[str] = mapped_column(String(50))
    space_params: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: "campaign" (measured here) or "imported".
    source: Mapped[str] = mapped_column(String(16))
    #: campaign: preparing -> measuring (progress from its jobs); imported: ready.
    state: Mapped[str] = mapped_column(String(16))
    #: The graph form measured (latlab.spaces.GraphForm); None: unknown (imports may not say).
    form: Mapped[str | None] = mapped_column(String(16), nullable=True)
    config: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatasetArch(Base):
    __tablename__ = "dataset_archs"
    __table_args__ = (Index("uq_dataset_archs_dataset_arch", "dataset_id", "arch", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    #: The space's canonical string encoding, and the index as decimal text (it can exceed 64 bits).
    arch: Mapped[str] = mapped_column(String(1000))
    arch_index: Mapped[str] = mapped_column(String(40))
    #: The exported model, once prepared (campaigns only).
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    #: Why the arch could not be prepared: it is left out of the campaign's jobs.
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Unexpected errors while preparing it so far (the third fails it).
    failures: Mapped[int] = mapped_column(Integer, server_default="0", default=0)


class DatasetEntry(Base):
    """One arch on one device: the job measuring it, or the imported measurement."""

    __tablename__ = "dataset_entries"

    dataset_arch_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_archs.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), nullable=True, index=True)
    measurement_id: Mapped[int | None] = mapped_column(
        ForeignKey("measurements.id"), nullable=True, index=True
    )
    #: Times the entry was measured again because the device's canary drifted around it.
    remeasured: Mapped[int] = mapped_column(Integer, server_default="0", default=0)


class Lut(Base):
    """A lookup table for one device and runtime config; the built table is a JSON document
    (lut.table.LookupTable, its config embedded), written once when it is ready."""

    __tablename__ = "luts"
    __table_args__ = (Index("ix_luts_device_state", "device_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    #: "measured-ops" or "micro-models".
    source: Mapped[str] = mapped_column(String(16))
    rules: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    #: What to build from: space, archs/n/seed, model_ids, dataset_id (the request).
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)
    space: Mapped[str | None] = mapped_column(String(50), nullable=True)
    #: preparing -> (measuring ->) ready | failed.
    state: Mapped[str] = mapped_column(String(16))
    table: Mapped[dict[str, Any] | None] = mapped_column(JsonType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Unexpected errors while preparing or assembling it so far (the third fails it).
    failures: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LutKernel(Base):
    """One micro-model of a LUT: the kernel key it times, its model and its job."""

    __tablename__ = "lut_kernels"

    lut_id: Mapped[str] = mapped_column(ForeignKey("luts.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(1000), primary_key=True)
    op_type: Mapped[str] = mapped_column(String(200))
    #: The micro-model's first node: the profiler row that computes it times the kernel.
    anchor: Mapped[str] = mapped_column(String(1000))
    flops: Mapped[int] = mapped_column(BigInteger)
    bytes_moved: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)


class Predictor(Base):
    """A trained latency predictor: a version per device + runtime, its artifact in the blob
    store (predictors/model.py format), what it was trained on and how it scored."""

    __tablename__ = "predictors"
    __table_args__ = (
        Index(
            "uq_predictors_device_runtime_version", "device_id", "runtime", "version", unique=True
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: The runtime its training data was measured with (``unknown`` for published data that
    #: names none).
    runtime: Mapped[str] = mapped_column(String(100))
    #: The search space whose predictor graphs it reads; None: whole OpGraphs of models.
    space: Mapped[str | None] = mapped_column(String(50), nullable=True)
    space_params: Mapped[dict[str, Any]] = mapped_column(JsonType)
    version: Mapped[int] = mapped_column(Integer)
    current: Mapped[bool] = mapped_column(default=False)
    training: Mapped[dict[str, Any]] = mapped_column(JsonType)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_bytes: Mapped[int] = mapped_column(BigInteger)
    plot_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
