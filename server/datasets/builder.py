"""The campaign builder: the background step that prepares a requested campaign.

One arch per transaction: export it (ONNX, or TFLite for the runtimes that read it), store the
model (deduplicated), queue a job per device, record the entries. A server restart resumes
preparing where it stopped; the jobs themselves live in the queue, so nothing measured is
measured again.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from latlab.export.files import model_file
from latlab.runtimes import runtime_spec, stored_config
from latlab.schemas import DatasetState, JobCreate
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets import repository
from latlab.server.jobs.service import create_job
from latlab.server.models.service import store_model
from latlab.spaces import GraphForm, get_space

__all__ = ["prepare_next"]

log = logging.getLogger(__name__)

#: Weights of exported archs: fixed, so the same arch is the same model file in every campaign.
EXPORT_SEED = 0


def prepare_next(session: Session, blobs: BlobStore, settings: Settings) -> bool:
    """Prepare one arch of the oldest preparing campaign; False when there is nothing to do."""
    dataset = repository.next_preparing(session)
    if dataset is None:
        return False
    arch_row = repository.next_unprepared_arch(session, dataset.id)
    if arch_row is None:
        dataset.state = DatasetState.measuring.value
        log.info("dataset prepared", extra={"dataset_id": dataset.id})
        return True
    space = get_space(dataset.space, **dataset.space_params)
    form = GraphForm(dataset.form or GraphForm.pruned)
    graph = space.graph(space.parse(arch_row.arch), form)
    work_dir = settings.upload_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    config = stored_config(dataset.config or {})
    fmt = runtime_spec(config.runtime).model_format  # ONNX, or TFLite for phones and LiteRT
    with tempfile.NamedTemporaryFile(dir=work_dir, suffix=f".{fmt.value}", delete=False) as tmp:
        tmp.write(model_file(graph, fmt, seed=EXPORT_SEED))
    stem = f"{dataset.space}-{arch_row.arch_index}"
    if form is not GraphForm.pruned:
        stem += f"-{form}"
    model, _ = store_model(session, blobs, Path(tmp.name), f"{stem}.{fmt.value}")
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
    return True
