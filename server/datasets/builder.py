"""The campaign builder: the background step that prepares a requested campaign.

One arch per transaction: export it (ONNX, or TFLite for the runtimes that read it), store the
model (deduplicated), queue a job per device, record the entries. An arch that cannot be
prepared is failed with the reason and the campaign moves on (``background.guarded``); a
campaign none of whose archs could be prepared, or whose space can no longer be built, fails.
A server restart resumes preparing where it stopped; the jobs themselves live in the queue, so
nothing measured is measured again.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.export.files import model_file
from latlab.runtimes import runtime_spec, stored_config
from latlab.schemas import DatasetState, JobCreate
from latlab.server.background import guarded
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets import repository
from latlab.server.jobs.service import create_job
from latlab.server.models.service import ModelLimits, store_model
from latlab.server.tables import Dataset, DatasetArch
from latlab.server.uploads import scratch_file
from latlab.spaces import GraphForm, SearchSpace, get_space

__all__ = ["prepare_next"]

log = logging.getLogger(__name__)

#: Weights of exported archs: fixed, so the same arch is the same model file in every campaign.
EXPORT_SEED = 0


def prepare_next(session: Session, blobs: BlobStore, settings: Settings) -> bool:
    """Prepare one arch of the oldest preparing campaign; False when there is nothing to do."""
    dataset = repository.next_preparing(session)
    if dataset is None:
        return False
    try:  # a campaign stored before its space's parameters were bounded
        space = get_space(dataset.space, **dataset.space_params)
    except LatlabError as exc:
        _fail(dataset, str(exc))
        return True
    arch_row = repository.next_unprepared_arch(session, dataset.id)
    if arch_row is None:
        if repository.prepared_count(session, dataset.id) == 0:
            _fail(
                dataset,
                f"no arch could be prepared; the first: {repository.first_error(session, dataset.id)}",
            )
        else:
            dataset.state = DatasetState.measuring.value
            log.info("dataset prepared", extra={"dataset_id": dataset.id})
        return True

    def fail_arch(reason: str) -> None:
        arch_row.error = reason
        log.warning(
            "dataset arch failed",
            extra={"dataset_id": dataset.id, "arch": arch_row.arch, "error": reason},
        )

    guarded(
        session,
        arch_row,
        lambda: _prepare(session, blobs, settings, dataset, space, arch_row),
        fail_arch,
    )
    return True


def _prepare(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    dataset: Dataset,
    space: SearchSpace[object],
    arch_row: DatasetArch,
) -> None:
    form = GraphForm(dataset.form or GraphForm.pruned)
    graph = space.graph(space.parse(arch_row.arch), form)
    config = stored_config(dataset.config or {})
    fmt = runtime_spec(config.runtime).model_format  # ONNX, or TFLite for phones and LiteRT
    stem = f"{dataset.space}-{arch_row.arch_index}"
    if form is not GraphForm.pruned:
        stem += f"-{form}"
    with scratch_file(settings, suffix=f".{fmt.value}") as path:
        path.write_bytes(model_file(graph, fmt, seed=EXPORT_SEED))
        model, _ = store_model(
            session, blobs, path, f"{stem}.{fmt.value}", ModelLimits.of(settings)
        )
    arch_row.model_id = model.id
    jobs = {
        device_id: create_job(
            session,
            JobCreate(model_id=model.id, device_id=device_id, config=config),
            settings.max_attempts,
        ).id
        for device_id in (dataset.provenance or {})["devices"]
    }
    repository.add_entries(session, arch_row.id, jobs)


def _fail(dataset: Dataset, error: str) -> None:
    dataset.state = DatasetState.failed.value
    dataset.error = error
    log.warning("dataset failed", extra={"dataset_id": dataset.id, "error": error})
