"""Python SDK over the REST API: ``Client`` for users and search jobs, ``AgentClient`` for agents.

Every error answer becomes an ``ApiError`` (status, code, message); a server that does not
answer at all is ``ServerUnreachable``. Wherever a device is named, its id or its name will do
(the server resolves it; ``Client.device`` gives the device and its id).

    >>> from latlab.client import Client
    >>> with Client.connect() as c:  # the server and key `latlab` uses (latlab.config)
    ...     model = c.upload_model("net.onnx")
    ...     job = c.create_job(model.id, device_id="...")
    ...     done = c.wait_jobs([job.id])
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from latlab.config import resolve_connection
from latlab.errors import ApiError, ServerUnreachable
from latlab.runtimes import RuntimeConfig, default_config
from latlab.schemas import (
    MAX_PREDICT_ITEMS,
    CanaryPoint,
    ClaimedJob,
    DatasetCreate,
    DatasetFormat,
    DatasetOut,
    DatasetState,
    Deleted,
    DeviceDescriptor,
    DeviceOut,
    DeviceRegistered,
    HeartbeatOut,
    JobOut,
    JobState,
    LutCreate,
    LutFormat,
    LutOut,
    LutState,
    MeasurementIn,
    MeasurementOut,
    ModelOut,
    PredictDevicesOut,
    PredictDevicesRequest,
    PredictorOut,
    PredictOut,
    PredictRequest,
    TransferFitIn,
    TransferPlanIn,
    TransferPlanOut,
)
from latlab.spaces import GraphForm

__all__ = ["Adapted", "AgentClient", "Client", "Page"]


@dataclass(frozen=True)
class Adapted:
    """What ``Client.adapt`` did: the plan, the campaign that measured it (None for an
    imported device) and the registered transfer predictor."""

    plan: TransferPlanOut
    dataset: DatasetOut | None
    predictor: PredictorOut


DEFAULT_TIMEOUT_S = 30.0


class _Http:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            where = str(self._http.base_url).rstrip("/")
            raise ServerUnreachable(
                f"no answer from the server at {where} ({method} {path}: {exc})"
            ) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _page(self, path: str, params: dict[str, Any], kind: type[M]) -> Page[M]:
        response = self._send("GET", path, params=params)
        total = response.headers.get("X-Total-Count")
        items = [kind.model_validate(item) for item in response.json()]
        return Page(items, total=int(total) if total is not None else len(items))


M = TypeVar("M", bound=BaseModel)


def _json_body(body: BaseModel) -> dict[str, Any]:
    """A request body serialised by pydantic in one pass (not its dict through json.dumps)."""
    return {
        "content": body.model_dump_json(exclude_none=True),
        "headers": {"Content-Type": "application/json"},
    }


def _bulk_answer(kind: type[M], content: bytes) -> M:
    """A large answer (10,000 predictions: some 40,000 new objects) validated straight from
    its bytes (the parsed dict took ~10x as long), with the garbage collector paused: passes
    over the caller's whole heap set off in the middle of it took 5-10x the parse itself
    (bench/predict_layerwise.py). Nothing it builds is cyclic garbage."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return kind.model_validate_json(content)
    finally:
        if paused:
            gc.enable()


class Page(list[M]):
    """One page of a list the server pages through: the items, and ``total``, how many match
    the query in all (its ``X-Total-Count``)."""

    def __init__(self, items: Iterable[M], *, total: int) -> None:
        super().__init__(items)
        self.total = total


def _api_error(response: httpx.Response) -> ApiError:
    try:
        err = response.json()["error"]
        return ApiError(response.status_code, str(err["code"]), str(err["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:500])


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Client(_Http):
    """A user's or a search job's view of the server (API key)."""

    def __init__(self, base_url: str, api_key: str, **kwargs: Any) -> None:
        super().__init__(base_url, api_key, **kwargs)

    @classmethod
    def connect(
        cls,
        server_url: str | None = None,
        api_key: str | None = None,
        *,
        profile: str | None = None,
        **kwargs: Any,
    ) -> Self:
        """A client for the server and key the CLI would use: the arguments, else the
        environment, else a profile saved by ``latlab login``, else a local server's generated
        key (``latlab.config``)."""
        found = resolve_connection(server_url, api_key, profile)
        return cls(found.server_url, found.api_key, **kwargs)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/healthz")
        return result

    # devices
    def devices(self) -> list[DeviceOut]:
        return [DeviceOut.model_validate(d) for d in self._json("GET", "/v1/devices")]

    def device(self, device: str) -> DeviceOut:
        """The device with this id, or else with this name (an ``ApiError`` 422 naming the ids
        when several devices share the name): ``client.device(name).id`` is its id."""
        return DeviceOut.model_validate(self._json("GET", f"/v1/devices/{_segment(device)}"))

    def device_canary(
        self, device: str, *, runtime_identity: str | None = None, limit: int = 1000
    ) -> list[CanaryPoint]:
        """The device's canary series, oldest first: its reference model timed between jobs."""
        params = _params(runtime_identity=runtime_identity, limit=limit)
        rows = self._json("GET", f"/v1/devices/{_segment(device)}/canary", params=params)
        return [CanaryPoint.model_validate(r) for r in rows]

    def revoke_device(self, device: str) -> DeviceOut:
        """Revoke the device's token (a read-write key); its jobs are requeued or cancelled."""
        return DeviceOut.model_validate(
            self._json("POST", f"/v1/devices/{_segment(device)}/revoke")
        )

    # models
    def upload_model(self, path: str | Path, data: bytes | None = None) -> ModelOut:
        path = Path(path)
        content = path.read_bytes() if data is None else data
        files = {"file": (path.name, content, "application/octet-stream")}
        return ModelOut.model_validate(self._json("POST", "/v1/models", files=files))

    def model(self, model_id: str) -> ModelOut:
        return ModelOut.model_validate(self._json("GET", f"/v1/models/{model_id}"))

    def models(
        self, *, limit: int = 100, offset: int = 0, newest_first: bool = False
    ) -> Page[ModelOut]:
        params = {"limit": limit, "offset": offset, "newest_first": newest_first}
        return self._page("/v1/models", params, ModelOut)

    def delete_model(self, model_id: str, force: bool = False) -> Deleted:
        """Delete the model with its jobs, measurements and file (a read-write key). An
        ``ApiError`` 409 names the datasets and LUTs that use it, unless ``force``; the
        device canary's reference model is never deleted. The answer counts what went."""
        params = {"force": "true"} if force else None
        data = self._json("DELETE", f"/v1/models/{_segment(model_id)}", params=params)
        return Deleted.model_validate(data)

    # jobs
    def create_job(
        self,
        model_id: str,
        *,
        device_id: str | None = None,
        selector: dict[str, str | int] | None = None,
        config: RuntimeConfig | None = None,
        max_attempts: int | None = None,
    ) -> JobOut:
        body: dict[str, Any] = {"model_id": model_id}
        if device_id is not None:
            body["device_id"] = device_id
        if selector is not None:
            body["selector"] = selector
        if config is not None:
            body["config"] = config.model_dump(mode="json")
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        return JobOut.model_validate(self._json("POST", "/v1/jobs", json=body))

    def job(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(
        self,
        *,
        state: JobState | None = None,
        model_id: str | None = None,
        device_id: str | None = None,
        ids: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> Page[JobOut]:
        params = _params(
            state=state,
            model_id=model_id,
            device_id=device_id,
            ids=ids,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
        )
        return self._page("/v1/jobs", params, JobOut)

    def cancel_job(self, job_id: str) -> JobOut:
        return JobOut.model_validate(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def wait_jobs(
        self, job_ids: Iterable[str], *, timeout_s: float = 600.0, poll_s: float = 0.2
    ) -> list[JobOut]:
        """Wait until every job has finished (done, failed or cancelled); in the given order."""
        ids = list(job_ids)
        finished = {j.id: j for j in self.iter_finished(ids, timeout_s=timeout_s, poll_s=poll_s)}
        return [finished[i] for i in ids]

    def iter_finished(
        self, job_ids: Iterable[str], *, timeout_s: float = 600.0, poll_s: float = 0.2
    ) -> Iterator[JobOut]:
        """Yield each job once as it finishes; ``TimeoutError`` if some have not in time."""
        pending = dict.fromkeys(job_ids)
        deadline = time.monotonic() + timeout_s
        first = True
        while pending:
            finished = []
            ids = list(pending)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                jobs = self.jobs(ids=chunk, limit=len(chunk))
                if first and len(jobs) < len(chunk):  # waiting for a job that is not there
                    unknown = sorted(set(chunk) - {j.id for j in jobs})
                    raise ApiError(404, "not_found", f"no job {', '.join(unknown[:5])}")
                finished += [j for j in jobs if not j.state.pending]
            first = False
            for job in finished:
                del pending[job.id]
                yield job
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} job(s) not finished after {timeout_s} s")
                time.sleep(poll_s)

    # datasets
    def create_dataset(self, body: DatasetCreate) -> DatasetOut:
        data = self._json(
            "POST", "/v1/datasets", json=body.model_dump(mode="json", exclude_none=True)
        )
        return DatasetOut.model_validate(data)

    def import_dataset(
        self,
        files: Iterable[str | Path | tuple[str, bytes]],
        name: str,
        *,
        space: str | None = None,
        space_params: dict[str, int] | None = None,
        note: str | None = None,
        form: GraphForm | None = None,
        runtime: str | None = None,
        timeout_s: float = 600.0,
    ) -> DatasetOut:
        """Import LatBench pickles/JSON, CSV files or a latlab export zip as one dataset.

        ``form``: the graph form the figures are of, if known (GraphForm; a latlab export says
        it itself). ``runtime`` names what the published numbers were measured with, for rows
        whose file does not say (LatBench files never do; a CSV without a ``runtime`` column);
        such rows are stored under ``unknown`` otherwise. The answer's
        ``provenance["import_devices"]`` lists each device with its rows and whether this
        import created it."""
        parts = []
        for item in files:
            file_name, data = (
                item if isinstance(item, tuple) else (Path(item).name, Path(item).read_bytes())
            )
            parts.append(("files", (file_name, data, "application/octet-stream")))
        fields = _params(
            name=name,
            space=space,
            space_params=json.dumps(space_params) if space_params else None,
            note=note,
            form=form.value if form is not None else None,
            runtime=runtime,
        )
        data = self._json(
            "POST", "/v1/datasets/import", files=parts, data=fields, timeout=timeout_s
        )
        return DatasetOut.model_validate(data)

    def dataset(self, dataset_id: str) -> DatasetOut:
        return DatasetOut.model_validate(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def datasets(self) -> list[DatasetOut]:
        return [DatasetOut.model_validate(d) for d in self._json("GET", "/v1/datasets")]

    def delete_dataset(self, dataset_id: str) -> Deleted:
        """Delete the dataset, its archs and entries (a read-write key): pending jobs only it
        needed are cancelled, an import's measurements go, measured ones stay."""
        data = self._json("DELETE", f"/v1/datasets/{_segment(dataset_id)}")
        return Deleted.model_validate(data)

    def export_dataset(self, dataset_id: str, fmt: DatasetFormat) -> bytes:
        """The export's bytes: a zip, or CSV text for ``csv``."""
        response = self._send(
            "GET", f"/v1/datasets/{dataset_id}/export", params={"format": fmt.value}
        )
        return response.content

    def wait_dataset(
        self,
        dataset_id: str,
        *,
        timeout_s: float = 3600.0,
        poll_s: float = 0.5,
        on_progress: Callable[[DatasetOut], None] | None = None,
    ) -> DatasetOut:
        """Wait until every entry of the campaign is done or failed and the device canaries
        around them are checked (a drifted window measured again), or the campaign failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            dataset = self.dataset(dataset_id)
            if on_progress is not None:
                on_progress(dataset)
            p = dataset.progress
            if dataset.state not in (DatasetState.preparing, DatasetState.measuring):
                return dataset
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"dataset {dataset_id}: {p.pending} entries pending after {timeout_s} s"
                )
            time.sleep(poll_s)

    # lookup tables and predictions
    def create_lut(self, body: LutCreate) -> LutOut:
        data = self._json("POST", "/v1/luts", json=body.model_dump(mode="json", exclude_none=True))
        return LutOut.model_validate(data)

    def lut(self, lut_id: str) -> LutOut:
        return LutOut.model_validate(self._json("GET", f"/v1/luts/{lut_id}"))

    def luts(self, device_id: str | None = None) -> list[LutOut]:
        data = self._json("GET", "/v1/luts", params=_params(device_id=device_id))
        return [LutOut.model_validate(d) for d in data]

    def delete_lut(self, lut_id: str) -> Deleted:
        """Delete the LUT with its micro-model jobs and their measurements (a read-write
        key)."""
        return Deleted.model_validate(self._json("DELETE", f"/v1/luts/{_segment(lut_id)}"))

    def wait_lut(
        self,
        lut_id: str,
        *,
        timeout_s: float = 3600.0,
        poll_s: float = 0.5,
        on_progress: Callable[[LutOut], None] | None = None,
    ) -> LutOut:
        """Wait until the LUT is ready or failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            lut = self.lut(lut_id)
            if on_progress is not None:
                on_progress(lut)
            if lut.state in (LutState.ready, LutState.failed):
                return lut
            if time.monotonic() > deadline:
                raise TimeoutError(f"LUT {lut_id} is {lut.state.value} after {timeout_s} s")
            time.sleep(poll_s)

    def export_lut(self, lut_id: str, fmt: LutFormat = LutFormat.json) -> str:
        """The LUT as JSON (latlab's format) or YAML (OFA/ProxylessNAS style) text."""
        return self._send("GET", f"/v1/luts/{lut_id}/export", params={"format": fmt.value}).text

    def predict(
        self,
        device_id: str,
        *,
        space: str | None = None,
        archs: Iterable[str | int] | None = None,
        model_ids: Iterable[str] | None = None,
        predictor: str = "auto",
        version: str | None = None,
        space_params: dict[str, int] | None = None,
        detail: bool = True,
    ) -> PredictOut:
        """Predicted latency (ms) of archs of a space, or of stored models, on a device (id or
        name): by the device's current GCN for the space, its newest LUT (``auto`` picks), or
        ``version``. Any number of items: a longer list than the server takes in one call
        (``MAX_PREDICT_ITEMS``) is sent in batches, each answered by the version that answered
        the first, and comes back as one answer in the order given. ``detail=False``: latency
        (and spread) only, no LUT kernel lists (a search job's batches)."""
        answer: PredictOut | None = None
        for batch_archs, batch_models in _batches(archs, model_ids):
            body = PredictRequest(
                device_id=device_id if answer is None else answer.device_id,
                version=version if answer is None else answer.version,
                **_query(space, batch_archs, batch_models, predictor, space_params, detail),
            )
            response = self._send("POST", "/v1/predict", **_json_body(body))
            out = _bulk_answer(PredictOut, response.content)
            if answer is None:
                answer = out
            else:
                answer.predictions.extend(out.predictions)
        assert answer is not None  # _batches yields at least once
        return answer

    def predict_devices(
        self,
        device_ids: Iterable[str],
        *,
        space: str | None = None,
        archs: Iterable[str | int] | None = None,
        model_ids: Iterable[str] | None = None,
        predictor: str = "auto",
        space_params: dict[str, int] | None = None,
        detail: bool = True,
    ) -> list[PredictOut]:
        """The same archs or models on several devices (ids or names; each by its own current
        predictor), one answer per device in the order given. Longer lists than one call
        takes are batched as in ``predict``, each device's batches by one version."""
        batches = iter(_batches(archs, model_ids))
        first_archs, first_models = next(batches)
        body = PredictDevicesRequest(
            device_ids=list(device_ids),
            **_query(space, first_archs, first_models, predictor, space_params, detail),
        )
        response = self._send("POST", "/v1/predict/devices", **_json_body(body))
        answers = _bulk_answer(PredictDevicesOut, response.content).results
        for batch_archs, batch_models in batches:
            for answer in answers:
                more = self.predict(
                    answer.device_id,
                    space=space,
                    archs=batch_archs,
                    model_ids=batch_models,
                    predictor=predictor,
                    version=answer.version,
                    space_params=space_params,
                    detail=detail,
                )
                answer.predictions.extend(more.predictions)
        return answers

    # predictor registry
    def upload_predictor(
        self,
        artifact: bytes,
        *,
        device_id: str,
        runtime: str,
        space: str | None,
        space_params: dict[str, int] | None = None,
        training: dict[str, Any] | None = None,
        plot_png: bytes | None = None,
        current: bool | None = None,
    ) -> PredictorOut:
        """Register a trained predictor (``latlab train`` makes the artifact): a new version
        for the device + runtime. ``current`` None: it serves ``auto`` predictions when it is
        the first for its device + runtime + space or validates better (lower cross-validated
        error) than the current one; True or False decides."""
        files = [("artifact", ("predictor.npz", artifact, "application/octet-stream"))]
        if plot_png is not None:
            files.append(("plot", ("scatter.png", plot_png, "image/png")))
        form = _params(
            device_id=device_id,
            runtime=runtime,
            space=space,
            space_params=json.dumps(space_params or {}),
            training=json.dumps(training or {}),
            current=None if current is None else str(current).lower(),
        )
        data = self._json("POST", "/v1/predictors", files=files, data=form, timeout=120.0)
        return PredictorOut.model_validate(data)

    def predictors(self, device_id: str | None = None) -> list[PredictorOut]:
        data = self._json("GET", "/v1/predictors", params=_params(device_id=device_id))
        return [PredictorOut.model_validate(p) for p in data]

    def predictor(self, predictor_id: str) -> PredictorOut:
        return PredictorOut.model_validate(self._json("GET", f"/v1/predictors/{predictor_id}"))

    def make_current(self, predictor_id: str) -> PredictorOut:
        data = self._json("POST", f"/v1/predictors/{predictor_id}/current")
        return PredictorOut.model_validate(data)

    def delete_predictor(self, predictor_id: str) -> Deleted:
        """Delete the version and its artifact (a read-write key); if it was current, the
        newest older version is now (``current_predictor`` in the answer), else none."""
        data = self._json("DELETE", f"/v1/predictors/{_segment(predictor_id)}")
        return Deleted.model_validate(data)

    def plan_transfer(self, body: TransferPlanIn) -> TransferPlanOut:
        """The archs a device should measure for a transfer predictor (an imported device: the
        ones taken from its data), chosen to cover how the source devices differ."""
        data = self._json(
            "POST", "/v1/predictors/transfer/plan", json=body.model_dump(mode="json"), timeout=120.0
        )
        return TransferPlanOut.model_validate(data)

    def fit_transfer(self, body: TransferFitIn) -> PredictorOut:
        """Fit a transfer predictor from the device's measured latencies (``body.archs``, or
        every arch it has for the space) and the sources', and register it."""
        data = self._json(
            "POST", "/v1/predictors/transfer", json=body.model_dump(mode="json"), timeout=300.0
        )
        return PredictorOut.model_validate(data)

    def adapt(
        self,
        device: str,
        space: str,
        *,
        samples: int = 20,
        sources: list[str] | None = None,
        space_params: dict[str, int] | None = None,
        seed: int = 0,
        form: GraphForm | None = None,
        config: RuntimeConfig | None = None,
        current: bool | None = None,
        timeout_s: float = 7 * 24 * 3600.0,
        on_progress: Callable[[DatasetOut], None] | None = None,
    ) -> Adapted:
        """A transfer predictor for ``device`` from ``samples`` of its own measurements: plan
        the archs, measure them as a campaign (named ``adapt-SPACE-kK-sSEED``: a second call
        follows the first one's campaign instead of starting another; an imported device takes
        them from its data), fit and register it."""
        plan_body = TransferPlanIn(
            device_id=device,
            space=space,
            space_params=space_params or {},
            sources=sources,
            form=form,
            samples=samples,
            seed=seed,
        )
        plan = self.plan_transfer(plan_body)
        dataset = None
        archs: list[str | int] = list(plan.archs)
        if plan.measure:
            name = f"adapt-{space}-k{samples}-s{seed}"
            target = self.device(device)
            found = [d for d in self.datasets() if d.name == name and target.id in d.device_ids]
            dataset = (
                found[-1]
                if found
                else self.create_dataset(
                    DatasetCreate(
                        name=name,
                        space=space,
                        space_params=space_params or {},
                        archs=archs,
                        device_ids=[target.id],
                        form=plan.form,
                        config=config if config is not None else default_config(),
                    )
                )
            )
            dataset = self.wait_dataset(dataset.id, timeout_s=timeout_s, on_progress=on_progress)
            measured = {r["arch"] for r in self.dataset_rows(dataset.id)}
            archs = [a for a in plan.archs if a in measured]
        predictor = self.fit_transfer(
            TransferFitIn(
                device_id=device,
                space=space,
                space_params=space_params or {},
                sources=sources,
                form=plan.form if plan.measure else form,
                archs=archs or None,
                current=current,
            )
        )
        return Adapted(plan, dataset, predictor)

    def predictor_plot(self, predictor_id: str) -> bytes:
        return self._send("GET", f"/v1/predictors/{predictor_id}/plot").content

    def dataset_rows(self, dataset_id: str, device_id: str | None = None) -> list[dict[str, str]]:
        """The dataset's CSV export as rows (space, arch, device_id, latency_ms, ...), of one
        device if given (its id or name)."""
        text = self.export_dataset(dataset_id, DatasetFormat.csv).decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        if device_id is None:
            return rows
        if not any(r["device_id"] == device_id for r in rows):
            device_id = self.device(device_id).id  # a name (or a device not in the dataset)
        return [r for r in rows if r["device_id"] == device_id]

    # measurements
    def measurements(
        self,
        *,
        model_id: str | None = None,
        device_id: str | None = None,
        job_id: str | None = None,
        samples: bool = False,
        ops: bool = False,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> Page[MeasurementOut]:
        params = _params(
            model_id=model_id,
            device_id=device_id,
            job_id=job_id,
            samples=samples,
            ops=ops,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
        )
        return self._page("/v1/measurements", params, MeasurementOut)

    def measurement(self, measurement_id: int) -> MeasurementOut:
        return MeasurementOut.model_validate(
            self._json("GET", f"/v1/measurements/{measurement_id}")
        )


class AgentClient(_Http):
    """A device agent's calls (device token; the enrollment key only to register)."""

    def __init__(self, base_url: str, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, token, **kwargs)

    def register(
        self, enroll_key: str, name: str, descriptor: DeviceDescriptor
    ) -> DeviceRegistered:
        body = {"name": name, "descriptor": descriptor.model_dump(mode="json")}
        headers = {"Authorization": f"Bearer {enroll_key}"}
        data = self._json("POST", "/v1/devices/register", json=body, headers=headers)
        registered = DeviceRegistered.model_validate(data)
        self._http.headers["Authorization"] = f"Bearer {registered.token}"
        return registered

    def heartbeat(
        self,
        job_id: str | None = None,
        lease_token: str | None = None,
        descriptor: DeviceDescriptor | None = None,
    ) -> HeartbeatOut:
        body = _params(
            job_id=job_id,
            lease_token=lease_token,
            descriptor=None if descriptor is None else descriptor.model_dump(mode="json"),
        )
        return HeartbeatOut.model_validate(self._json("POST", "/v1/agent/heartbeat", json=body))

    def claim(self, wait_s: float) -> ClaimedJob | None:
        response = self._send(
            "POST",
            "/v1/agent/claim",
            params={"wait_s": wait_s},
            timeout=wait_s + DEFAULT_TIMEOUT_S,
        )
        if response.status_code == 204:
            return None
        return ClaimedJob.model_validate(response.json())

    def download_model(self, model_id: str, dest: Path) -> None:
        """Stream the model to ``dest``, checking its sha256 (the model id) on the way."""
        tmp = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", f"/v1/models/{model_id}/content") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                with tmp.open("wb") as f:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        f.write(chunk)
            if digest.hexdigest() != model_id:
                raise ApiError(502, "corrupt_download", f"model {model_id}: sha256 mismatch")
            tmp.replace(dest)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"download of model {model_id}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def upload_result(self, job_id: str, result: MeasurementIn) -> MeasurementOut:
        data = self._json(
            "POST", f"/v1/agent/jobs/{job_id}/result", json=result.model_dump(mode="json")
        )
        return MeasurementOut.model_validate(data)

    def report_failure(self, job_id: str, lease_token: str, error: str) -> JobOut:
        body = {"lease_token": lease_token, "error": error[:20_000]}
        return JobOut.model_validate(
            self._json("POST", f"/v1/agent/jobs/{job_id}/failure", json=body)
        )

    def release(self, job_id: str, lease_token: str) -> JobOut:
        body = {"lease_token": lease_token}
        return JobOut.model_validate(
            self._json("POST", f"/v1/agent/jobs/{job_id}/release", json=body)
        )


def _segment(text: str) -> str:
    """``text`` as one URL path segment (a device name may hold spaces, ``?`` or ``#``)."""
    return quote(text, safe="")


def _batches(
    archs: Iterable[str | int] | None, model_ids: Iterable[str] | None
) -> Iterator[tuple[list[str | int] | None, list[str] | None]]:
    """The archs or models of a prediction in calls of at most ``MAX_PREDICT_ITEMS``; at least
    one call (both or neither given: one, for the server to refuse)."""
    arch_list = list(archs) if archs is not None else None
    model_list = list(model_ids) if model_ids is not None else None
    if arch_list is not None and model_list is None and len(arch_list) > MAX_PREDICT_ITEMS:
        for start in range(0, len(arch_list), MAX_PREDICT_ITEMS):
            yield arch_list[start : start + MAX_PREDICT_ITEMS], None
    elif model_list is not None and arch_list is None and len(model_list) > MAX_PREDICT_ITEMS:
        for start in range(0, len(model_list), MAX_PREDICT_ITEMS):
            yield None, model_list[start : start + MAX_PREDICT_ITEMS]
    else:
        yield arch_list, model_list


def _query(
    space: str | None,
    archs: Iterable[str | int] | None,
    model_ids: Iterable[str] | None,
    predictor: str,
    space_params: dict[str, int] | None,
    detail: bool = True,
) -> dict[str, Any]:
    """The fields of a prediction request shared by one device and several."""
    return {
        "detail": detail,
        "predictor": predictor,
        "space": space,
        "space_params": space_params or {},
        "archs": list(archs) if archs is not None else None,
        "model_ids": list(model_ids) if model_ids is not None else None,
    }
