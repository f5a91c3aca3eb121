"""The wire: pydantic models shared by the server, the agent and the client.

Units are in the field names (``*_ms``, ``*_us``, ``*_s``, ``*_bytes``); timestamps are
tz-aware UTC and end in ``_at``. Bodies the server accepts forbid unknown fields, so a typo in
a request is a 422, not a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from latlab.runtimes import AnsweredConfig, ModelFormat, RuntimeConfig, default_config
from latlab.spaces.base import GraphForm
from latlab.untrusted import INT32_MAX, JSON_INT_MAX
from latlab.wire import Count, In, JsonInt, Out

__all__ = [
    "MAX_PREDICT_ITEMS",
    "UNKNOWN_RUNTIME",
    "CanaryPoint",
    "ClaimedJob",
    "DatasetCreate",
    "DatasetFormat",
    "DatasetOut",
    "DatasetProgress",
    "DatasetSource",
    "DatasetState",
    "Deleted",
    "DeletedKind",
    "DeviceDescriptor",
    "DeviceOut",
    "DeviceRegistered",
    "DeviceSource",
    "ErrorBody",
    "EstimatedOp",
    "HeartbeatIn",
    "HeartbeatOut",
    "JobCreate",
    "JobFailureIn",
    "JobOut",
    "JobPurpose",
    "JobState",
    "LatencyStats",
    "LeaseIn",
    "LutCalibration",
    "LutCreate",
    "LutFormat",
    "LutOut",
    "LutProgress",
    "LutSource",
    "LutState",
    "Measured",
    "MeasurementIn",
    "MeasurementOut",
    "MeasurementQuality",
    "MeasurementSource",
    "ModelFormat",
    "ModelOut",
    "ModelSummary",
    "OpTiming",
    "PredictDevicesOut",
    "PredictDevicesRequest",
    "PredictOut",
    "PredictQuery",
    "PredictRequest",
    "Prediction",
    "PredictorOut",
    "RegisterIn",
    "ReportedStats",
    "RuntimeConfig",
    "RuntimeInfo",
    "TensorInfo",
    "Timing",
    "WarmupInfo",
]

#: The runtime of imported rows when neither the file nor the import names one.
UNKNOWN_RUNTIME = "unknown"
#: Architectures or models in one prediction call (``Client.predict`` splits longer lists).
MAX_PREDICT_ITEMS = 10_000

Name = Annotated[str, Field(min_length=1, max_length=200)]
#: A device named by its id or by its name (the server resolves either).
DEVICE_REF_MAX = 200
SampleMs = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: ``{"error": {"code": ..., "message": ...}}``."""

    class Error(BaseModel):
        code: str
        message: str

    error: Error


# --------------------------------------------------------------------------- devices


class RuntimeInfo(BaseModel):
    """A runtime the device can time models with (one per runner)."""

    name: str
    version: str
    providers: list[str] = Field(default_factory=list, max_length=32)


class DeviceDescriptor(BaseModel):
    """What the device is; selectors match on these fields."""

    hostname: str = Field(default="", max_length=200)
    cpu_model: str = Field(default="", max_length=200)
    cpu_arch: str = Field(default="", max_length=50)
    cpu_cores: int = Field(default=0, ge=0, le=4096)
    ram_bytes: int = Field(default=0, ge=0, le=JSON_INT_MAX)
    os: str = Field(default="", max_length=200)
    gpu: str | None = Field(default=None, max_length=200)
    #: Phones and boards: maker and model (``samsung SM-G991B``), SoC, adb serial.
    device_model: str = Field(default="", max_length=200)
    soc: str = Field(default="", max_length=200)
    serial: str = Field(default="", max_length=200)
    runtimes: list[RuntimeInfo] = Field(default_factory=list, max_length=32)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)


class RegisterIn(In):
    name: Name
    descriptor: DeviceDescriptor


class DeviceRegistered(BaseModel):
    device_id: str
    #: The device's own bearer token; shown once, stored by the server only as a hash.
    token: str


class DeviceSource(StrEnum):
    #: Registered by an agent; runs jobs.
    agent = "agent"
    #: A device of an imported dataset: measurements only, never a job.
    imported = "imported"


class DeviceOut(Out):
    id: str
    name: str
    source: DeviceSource = DeviceSource.agent
    descriptor: DeviceDescriptor
    created_at: datetime
    last_seen_at: datetime
    online: bool


class HeartbeatIn(In):
    job_id: str | None = Field(default=None, max_length=64)
    lease_token: str | None = Field(default=None, max_length=200)
    #: Sent at agent start: the server keeps the latest descriptor (runtimes get upgraded).
    descriptor: DeviceDescriptor | None = None


class HeartbeatOut(BaseModel):
    server_time_at: datetime
    #: New expiry of the lease named in the heartbeat, if any.
    lease_expires_at: datetime | None = None


# --------------------------------------------------------------------------- models


class TensorInfo(BaseModel):
    name: str
    #: Dimensions; a symbolic dimension is its name (``"batch"``), an unknown one ``None``.
    shape: list[int | str | None]
    dtype: str


class ModelSummary(BaseModel):
    n_nodes: int
    op_counts: dict[str, int]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opset: int
    #: Parameters: elements of all initializers.
    params: int
    #: Multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul; None if a shape is unknown.
    macs: int | None
    #: 2 x macs (the usual "FLOPs" convention counts multiply and add apart).
    flops: int | None
    #: The largest tensor the model declares (unknown and symbolic dims counted as 1) and its
    #: bytes: the least an agent would allocate for it.
    largest_tensor: str | None = None
    largest_tensor_bytes: int | None = None


class ModelOut(Out):
    id: str  # sha256 of the file's bytes, hex
    format: ModelFormat
    filename: str
    size_bytes: int
    summary: ModelSummary
    created_at: datetime


# --------------------------------------------------------------------------- jobs


class JobState(StrEnum):
    queued = "queued"
    leased = "leased"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def pending(self) -> bool:
        return self in (JobState.queued, JobState.leased)


class JobPurpose(StrEnum):
    #: A user's, campaign's or LUT's model.
    measure = "measure"
    #: The device's reference model, queued by the server between other jobs so that a change
    #: in the device's speed shows (``latlab devices canary``).
    canary = "canary"


class JobCreate(In):
    """Time one model on one device, or on any one device whose descriptor matches."""

    model_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: The device's id or name.
    device_id: str | None = Field(default=None, max_length=DEVICE_REF_MAX)
    #: Descriptor fields that a device must match exactly (``{"cpu_arch": "x86_64"}``); a
    #: ``labels.KEY`` entry matches a label. Used when ``device_id`` is not given.
    selector: dict[str, str | JsonInt] | None = Field(default=None, max_length=32)
    config: RuntimeConfig = Field(default_factory=default_config)
    max_attempts: int | None = Field(default=None, ge=1, le=100)


class JobOut(Out):
    id: str
    model_id: str
    device_id: str | None
    selector: dict[str, str | int] | None
    config: AnsweredConfig
    state: JobState
    attempts: int
    max_attempts: int
    error: str | None
    claimed_by: str | None
    lease_expires_at: datetime | None
    #: While leased: when its deadline is up (a later result is refused, the job fails).
    deadline_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    measurement_id: int | None = None
    purpose: JobPurpose = JobPurpose.measure
    #: True when the request matched a pending identical job and that job is returned.
    deduplicated: bool = False
    #: In the answer to a create only: how many online devices could take the job now (0: it
    #: waits in the queue until one that matches comes online).
    online_matches: int | None = None


# --------------------------------------------------------------------------- agent side


class ClaimedJob(BaseModel):
    job_id: str
    lease_token: str
    lease_expires_at: datetime
    lease_s: float
    model_id: str
    model_format: ModelFormat
    model_size_bytes: int
    config: AnsweredConfig


class LeaseIn(In):
    lease_token: str = Field(min_length=1, max_length=200)


class JobFailureIn(LeaseIn):
    error: str = Field(min_length=1, max_length=20_000)


class WarmupInfo(BaseModel):
    n: int = Field(ge=0, le=INT32_MAX)
    total_ms: float = Field(ge=0)


class OpTiming(BaseModel):
    """One kernel the runtime executed, timed by its profiler."""

    #: The node's name in the graph the runtime executed (after its optimisations).
    node_name: str = Field(max_length=1000)
    op_type: str = Field(max_length=200)
    provider: str | None = Field(default=None, max_length=200)
    #: Kernel time over the profiled runs: the median where the profiler gives every run
    #: (onnxruntime), the mean where it reports only that (benchmark_model; see op_profile).
    dur_us: float = Field(ge=0, allow_inf_nan=False)
    n: int = Field(ge=1, le=INT32_MAX)
    #: Nodes of the uploaded graph this kernel computes (a fused kernel lists several; a
    #: layout conversion the runtime inserted lists none).
    source_nodes: list[str] = Field(default_factory=list)


class ReportedStats(BaseModel):
    """Statistics a runtime reports instead of per-run samples (TFLite's ``benchmark_model``
    prints count, first, min, max, mean and std of its runs, never the runs themselves)."""

    model_config = ConfigDict(extra="forbid")

    #: The tool that computed them.
    reported_by: str = Field(max_length=100)
    count: int = Field(ge=1, le=INT32_MAX)
    mean_ms: SampleMs
    std_ms: SampleMs | None = None
    min_ms: SampleMs | None = None
    max_ms: SampleMs | None = None
    #: The first timed run.
    first_ms: SampleMs | None = None


class Measured(BaseModel):
    """How a measurement was taken, declared once: ``Timing`` (what a runner returns),
    ``MeasurementIn`` (the agent's upload) and ``MeasurementOut`` (the answer) extend it, and
    the measurements table stores each field in the column of its name (a nested model
    flattened: ``warmup.n`` in ``warmup_n``; ``server/measurements/mapping.py``)."""

    runtime: str = Field(max_length=100)
    runtime_version: str = Field(max_length=100)
    #: The execution provider / delegate that actually ran the model.
    provider: str = Field(max_length=100)
    threads: int = Field(ge=1, le=INT32_MAX)
    input_shapes: dict[str, list[Count]]
    warmup: WarmupInfo
    #: Wall time the runner spent timing (sessions, warm-up, timed runs, profiled pass).
    timing_wall_s: float = Field(ge=0)
    #: How per-op rows were taken: graph optimisation level of the profiled session.
    op_profile: dict[str, Any] | None = None
    #: Facts of the device at measuring time that change the number (the timing CPU and what
    #: else ran on it, a phone's delegate and thermal status, an import's source).
    provenance: dict[str, Any] | None = Field(default=None, max_length=64)


class Timing(Measured):
    """What a runner measured: every timed run (or the runtime's own statistics where it
    gives no runs) and the profiled pass's per-op rows."""

    model_config = ConfigDict(frozen=True)

    #: Every timed run; empty where the runtime reports only statistics (``reported``).
    samples_ms: list[SampleMs] = Field(default_factory=list, max_length=1_000_000)
    #: The runtime's own statistics where it gives no per-run samples (benchmark_model).
    reported: ReportedStats | None = None
    ops: list[OpTiming] = Field(default_factory=list, max_length=100_000)


class MeasurementIn(In, Timing):
    """What the agent uploads: a runner's timing under the job's lease. The server computes
    the statistics from ``samples_ms``, or takes ``reported`` (exactly one of the two)."""

    lease_token: str = Field(min_length=1, max_length=200)
    protocol_version: str = Field(max_length=20)
    agent_version: str = Field(max_length=50)

    @model_validator(mode="after")
    def _samples_or_reported(self) -> MeasurementIn:
        if bool(self.samples_ms) == (self.reported is not None):
            raise ValueError("give either samples_ms (per-run samples) or reported, not both")
        return self


class LatencyStats(BaseModel):
    """Statistics of the raw samples. An imported number (a published dataset) has only
    ``median_ms`` (the dataset's headline figure, named in the provenance) and ``n = 0``. A
    runtime that reports statistics instead of samples (benchmark_model) gives no median:
    ``median_ms`` holds its mean, no percentiles, and the provenance says so."""

    n: int
    median_ms: float
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    iqr_ms: float | None = None


class MeasurementSource(StrEnum):
    measured = "measured"
    imported = "imported"


class MeasurementQuality(BaseModel):
    """How far to trust a measured number (``latlab.quality``): the verdict and the rule that
    gave it, the median's 95 % interval, the spread and the drift within the run. None where
    nothing was assessed (an imported number, a row stored before verdicts)."""

    #: ok, noisy, drifting, interfered, throttled, or unknown (too few samples).
    verdict: str | None = None
    verdict_rule: str | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    ci_halfwidth_pct: float | None = None
    cv_pct: float | None = None
    drift_pct: float | None = None


class MeasurementOut(Out, Measured):
    id: int
    job_id: str | None
    model_id: str | None
    source: MeasurementSource = MeasurementSource.measured
    device_id: str
    #: 0 for an imported number whose dataset does not say.
    threads: int = Field(ge=0)
    protocol_version: str
    agent_version: str
    #: The runtime config it was measured with; None for an imported number.
    config: AnsweredConfig | None
    stats: LatencyStats
    quality: MeasurementQuality = MeasurementQuality()
    samples_ms: list[float] | None = None
    ops: list[OpTiming] | None = None
    created_at: datetime
    purpose: JobPurpose = JobPurpose.measure


class CanaryPoint(Out):
    """One timing of a device's reference model (``GET /v1/devices/{id}/canary``)."""

    measurement_id: int
    job_id: str | None
    model_id: str | None
    measured_at: datetime
    median_ms: float
    ci_low_ms: float | None
    ci_high_ms: float | None
    verdict: str | None
    runtime: str
    provider: str
    threads: int
    runtime_identity: str | None


# --------------------------------------------------------------------------- datasets


class DatasetFormat(StrEnum):
    """Export formats: LatBench pickles (BRP-NAS/Eagle), the same as JSON, CSV, Parquet."""

    latbench = "latbench"
    json = "json"
    csv = "csv"
    parquet = "parquet"


class DatasetSource(StrEnum):
    #: Measured here: archs exported, uploaded and queued on devices.
    campaign = "campaign"
    #: Read from published or exported files (no raw samples).
    imported = "imported"


class DatasetState(StrEnum):
    #: A campaign's archs are being exported, uploaded and queued.
    preparing = "preparing"
    #: Every arch is queued; measurements are coming in (and, when all are in, the device
    #: canaries around them are checked: a drifted window is measured again).
    measuring = "measuring"
    #: Every entry of the campaign is done or failed, and its canaries checked.
    done = "done"
    #: No arch of the campaign could be prepared (``error`` says why).
    failed = "failed"
    #: An import: complete when created.
    ready = "ready"


class CampaignStrategy(StrEnum):
    #: The archs given (``archs``) or sampled (``n``), all queued at once.
    fixed = "fixed"
    #: ``budget`` archs on one device, in rounds of ``round_size``: each round covers what the
    #: measured ones leave uncovered in the space of the other devices' latencies, and a
    #: transfer predictor is fitted after it with its cross-validated error (``rounds``).
    active = "active"


class DatasetCreate(In):
    """Measure architectures of a search space on devices: an explicit list, or n sampled; or
    (``strategy=active``) a budget spent in rounds."""

    name: Name
    space: str = Field(min_length=1, max_length=50)
    space_params: dict[str, JsonInt] = Field(default_factory=dict, max_length=8)
    #: Indices or any string form of the space; or give ``n`` (and ``seed``) to sample.
    archs: list[str | JsonInt] | None = Field(default=None, min_length=1, max_length=100_000)
    n: int | None = Field(default=None, ge=1, le=100_000)
    seed: int = Field(default=0, ge=0, le=INT32_MAX)
    #: Ids or names.
    device_ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    selector: dict[str, str | JsonInt] | None = Field(default=None, max_length=32)
    config: RuntimeConfig = Field(default_factory=default_config)
    #: How the archs are written out: dead ops pruned (deployment toolchains) or every op kept
    #: (a framework's eager code, e.g. NAS-Bench-201's PyTorch cells).
    form: GraphForm = GraphForm.pruned
    #: A measurement is drifted when a device canary just before or after it differs from the
    #: median of the campaign's canaries on that device by more than this (%).
    canary_limit_pct: float = Field(default=5.0, gt=0, le=100)
    #: Times a drifted measurement is measured again (0: kept, marked ``drifted`` in exports).
    remeasure_drifted: int = Field(default=1, ge=0, le=5)
    strategy: CampaignStrategy = CampaignStrategy.fixed
    #: Active: the archs to measure in all, and per round (default: a quarter, at least 3).
    budget: int | None = Field(default=None, ge=3, le=100_000)
    round_size: int | None = Field(default=None, ge=1, le=100_000)
    #: Active: the source devices (ids or names; default every other device with latencies
    #: for the space).
    sources: list[Annotated[str, Field(max_length=DEVICE_REF_MAX)]] | None = Field(
        default=None, min_length=1, max_length=1000
    )


class CampaignRound(BaseModel):
    """An active campaign's round: archs measured so far and the transfer predictor's
    cross-validated metrics on them (``latlab.metrics``; ``mape``: its estimated error)."""

    round: int
    measured: int
    #: What the predictor serves after the round: ``transfer``, ``linear:<design>`` or a blend.
    served: str
    cv: dict[str, float | int | None]


class DatasetProgress(BaseModel):
    archs: int
    devices: int
    #: Archs exported, uploaded and queued (a campaign prepares them in the background).
    prepared: int
    #: Archs that could not be prepared (each counts as failed on every device).
    unprepared: int = 0
    #: Entries (arch x device) measured, failed (including those of unprepared archs) and left.
    done: int
    failed: int
    pending: int
    #: Entries measured again because the device's canary drifted around them.
    remeasured: int = 0


class DatasetOut(Out):
    id: str
    name: str
    space: str
    space_params: dict[str, int]
    source: DatasetSource
    state: DatasetState
    #: The graph form the latencies are of; None: unknown (an import that did not say).
    form: GraphForm | None
    config: AnsweredConfig | None
    provenance: dict[str, Any] | None
    error: str | None
    device_ids: list[str]
    progress: DatasetProgress
    created_at: datetime
    #: An active campaign's rounds so far (empty otherwise).
    rounds: list[CampaignRound] = Field(default_factory=list)


# --------------------------------------------------------------------------- lookup tables


class LutSource(StrEnum):
    #: Per-op rows of whole models measured on the device (the runtime's profiler).
    measured_ops = "measured-ops"
    #: One micro-model per kernel of a space sample or of given models, timed on the device.
    micro_models = "micro-models"


class LutState(StrEnum):
    #: Waiting for the background worker (building, or exporting and queueing micro-models).
    preparing = "preparing"
    #: Micro-models queued on the device; built when every one has finished.
    measuring = "measuring"
    ready = "ready"
    failed = "failed"


class LutCreate(In):
    """Build a LUT for one device and runtime config.

    ``measured-ops``: from the per-op rows of models already measured on the device with this
    runtime config (all of them, or those of ``dataset_id`` / ``model_ids``). ``micro-models``:
    from one micro-model per kernel of ``n`` archs sampled from ``space`` (or of ``archs``)
    and of ``model_ids``, timed on the device. Both are calibrated on whole models measured on
    the device with this runtime config: ``model_ids`` / ``dataset_id`` when given, else all.
    """

    name: Name | None = None
    #: The device's id or name.
    device_id: str = Field(max_length=DEVICE_REF_MAX)
    source: LutSource
    config: RuntimeConfig = Field(default_factory=default_config)
    space: str | None = Field(default=None, max_length=50)
    space_params: dict[str, JsonInt] = Field(default_factory=dict, max_length=8)
    archs: list[str | JsonInt] | None = Field(default=None, min_length=1, max_length=10_000)
    n: int | None = Field(default=None, ge=1, le=10_000)
    seed: int = Field(default=0, ge=0, le=INT32_MAX)
    model_ids: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    dataset_id: str | None = Field(default=None, max_length=64)


class LutProgress(BaseModel):
    kernels: int
    done: int
    failed: int
    pending: int


class LutCalibration(BaseModel):
    #: latency = scale x sum(entries) - per_kernel_us x kernels + constant_ms
    scale: float = 1.0
    per_kernel_us: float
    constant_ms: float
    n_models: int
    rmse_ms: float | None
    within_10pct: float | None


class LutOut(Out):
    id: str
    name: str
    device_id: str
    source: LutSource
    state: LutState
    config: AnsweredConfig
    rules: str
    space: str | None
    progress: LutProgress
    entries: int
    calibration: LutCalibration | None
    error: str | None
    created_at: datetime
    built_at: datetime | None


class LutFormat(StrEnum):
    json = "json"
    yaml = "yaml"


# --------------------------------------------------------------------------- prediction


class PredictQuery(In):
    """What to predict: architectures (``space`` + ``archs``) or uploaded models (``model_ids``),
    by which kind of predictor."""

    #: ``auto``: the device's first model that reads the items (its current registered
    #: predictor for the space, then its newest built LUT); or a kind (``gcn``, ``lut``, a
    #: plug-in's): the first of that kind. The server checks it against the kinds it knows.
    predictor: str = Field(default="auto", max_length=50)
    space: str | None = Field(default=None, max_length=50)
    space_params: dict[str, JsonInt] = Field(default_factory=dict, max_length=8)
    archs: list[str | JsonInt] | None = Field(default=None, min_length=1)
    model_ids: list[str] | None = Field(default=None, min_length=1)
    #: False: each answer is its latency (and the ensemble's spread) only, without a LUT's
    #: kernel count and estimated kernels (a search job's batch: an OFA arch can list 70
    #: estimated kernels, 15 MB for 1,000 archs); ask again with detail for the archs kept.
    detail: bool = True


class PredictRequest(PredictQuery):
    """Latency on one device."""

    #: The device's id or name.
    device_id: str = Field(max_length=DEVICE_REF_MAX)
    #: A specific LUT or predictor id (default: the device's current one).
    version: str | None = Field(default=None, max_length=64)


class PredictDevicesRequest(PredictQuery):
    """Latency of the same items on several devices (each by its own current predictor)."""

    #: Ids or names.
    device_ids: list[Annotated[str, Field(max_length=DEVICE_REF_MAX)]] = Field(min_length=1)


class EstimatedOp(BaseModel):
    """A kernel the LUT has no entry for, estimated by its op type's regression."""

    nodes: list[str]
    op_type: str
    key: str
    latency_us: float


class Prediction(BaseModel):
    #: The arch as given (or the model id).
    item: str
    latency_ms: float
    #: The ensemble's standard deviation (GCN with several members), else None.
    uncertainty_ms: float | None = None
    #: LUT only: kernels summed, and those estimated by the fallback.
    kernels: int | None = None
    estimated: list[EstimatedOp] = Field(default_factory=list)


class PredictOut(BaseModel):
    device_id: str
    #: The kind that answered (``auto`` resolved).
    predictor: str
    #: The id of the LUT or predictor that answered.
    version: str
    predictions: list[Prediction]


class PredictDevicesOut(BaseModel):
    #: One answer per device, in the order asked.
    results: list[PredictOut]


class PredictorOut(Out):
    id: str
    device_id: str
    kind: str
    runtime: str
    space: str | None
    space_params: dict[str, int]
    version: int
    current: bool
    #: What it was trained on: datasets, archs, split, config.
    training: dict[str, Any]
    #: Held-out (``test``) and validation metrics: rmse_ms, mape, within_*pct, spearman, kendall.
    metrics: dict[str, Any]
    artifact_bytes: int
    has_plot: bool
    created_at: datetime


class TransferSources(In):
    """Which devices' latencies a transfer predictor learns from, for which target."""

    #: The target device's id or name.
    device_id: str = Field(max_length=DEVICE_REF_MAX)
    space: str = Field(min_length=1, max_length=50)
    space_params: dict[str, JsonInt] = Field(default_factory=dict, max_length=8)
    #: Source device ids or names (default: every other device with latencies for the space).
    sources: list[Annotated[str, Field(max_length=DEVICE_REF_MAX)]] | None = Field(
        default=None, min_length=1, max_length=1000
    )
    #: The target's graph form (default: the form its data has; ``pruned`` for a new device).
    form: GraphForm | None = None


class TransferPlanIn(TransferSources):
    """Which archs the target should measure."""

    samples: int = Field(default=20, ge=3, le=100_000)
    seed: int = Field(default=0, ge=0, le=INT32_MAX)
    #: Choose among these archs only (default: any arch the sources cover; an imported
    #: device: any of those it has).
    candidates: list[str | JsonInt] | None = Field(default=None, min_length=1, max_length=100_000)


class TransferPlanOut(BaseModel):
    #: The archs to measure, in the space's own string form.
    archs: list[str]
    #: True: the device has an agent and measures them; False: an imported device, whose
    #: latencies for them are already stored.
    measure: bool
    form: GraphForm
    #: The source devices (id and name) and the archs at least half of them have (a source's
    #: missing ones filled in from the others).
    sources: list[dict[str, str]]
    shared_archs: int
    #: Devices left out as sources, and why.
    left_out: dict[str, str] = Field(default_factory=dict)


class TransferFitIn(TransferSources):
    """Fit and register a transfer predictor from the target's measured latencies."""

    #: Only these of the target's measured archs (default: every arch it has for the space).
    archs: list[str | JsonInt] | None = Field(default=None, min_length=1, max_length=100_000)
    #: True or False as given; None: the registry's rule for every registration (current when
    #: the device + runtime + space has no current version or its cross-validated error is larger).
    current: bool | None = None


# --------------------------------------------------------------------------- deletes


class DeletedKind(StrEnum):
    dataset = "dataset"
    lut = "lut"
    predictor = "predictor"
    model = "model"


class Deleted(Out):
    """What ``DELETE /v1/{datasets,luts,predictors,models}/{id}`` did, in one transaction."""

    kind: DeletedKind
    id: str
    #: Rows removed per table (``datasets``, ``dataset_entries``, ``measurements``,
    #: ``op_measurements``, ``jobs``, ...) and ``blobs`` (files gone from the blob store); every
    #: kind the delete can remove is listed, zeros included.
    removed: dict[str, int]
    #: Rows kept but changed: ``jobs_cancelled`` (pending jobs nothing else needed),
    #: ``dataset_archs_unprepared`` (archs of campaigns whose model was deleted),
    #: ``predictors_made_current`` (the version before a deleted current one).
    changed: dict[str, int] = Field(default_factory=dict)
    #: A predictor's delete: the version of its device + runtime current now (None: none is).
    current_predictor: str | None = None
