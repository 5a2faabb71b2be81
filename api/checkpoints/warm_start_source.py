"""Where a spec's ``warm_start`` points: the source job's checkpoint, or why there is none.

The store's half of ``api.checkpoints.warm_start`` (which turns the answer into a 404 or a 422):
the worker reads it when the job starts, without the web layer.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.checkpoints import repository as ckpt_repo
from api.db import blobs
from api.ledger import repository as jobs_repo
from ml.spec import WarmStartSpec
from ml.tensor_manifest import header_length, safetensors_shapes

ENDED = ("succeeded", "failed", "canceled")


def source_checkpoint(
    session: Session, warm: WarmStartSpec, team_id: str
) -> ckpt_repo.Checkpoint | str:
    """The source checkpoint, or why there is none (the job itself missing: ``"no job"``)."""
    source = jobs_repo.get_job(session, warm.job_id, team_id)
    if source is None:
        return "no job"
    if source.status not in ENDED:
        return f"job {warm.job_id!r} is {source.status}: warm start from a job that has ended"
    query = select(ckpt_repo.Checkpoint).where(ckpt_repo.Checkpoint.job_id == source.id)
    if warm.checkpoint == "best":
        ckpt = session.scalar(query.where(ckpt_repo.Checkpoint.is_best).limit(1))
        missing = "has no best checkpoint (checkpointing.keep_best 0?): use 'latest' or an id"
    elif warm.checkpoint == "latest":
        ckpt = ckpt_repo.latest_checkpoint(session, source.id)
        missing = "has no checkpoint"
    else:
        ckpt = ckpt_repo.get_checkpoint(session, source.id, warm.checkpoint)
        missing = f"has no checkpoint {warm.checkpoint} (GET /v1/jobs/{{id}}/checkpoints)"
    return ckpt if ckpt is not None else f"job {warm.job_id!r} {missing}"


def weights_shapes(session: Session, checkpoint_id: int) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a checkpoint's weights, from its safetensors header (the
    first chunk or few; the tensors themselves are not read)."""
    ref = ckpt_repo.file_ref(checkpoint_id, "weights")
    data = b""
    for seq in blobs.chunk_seqs(session, ref):
        data += blobs.read_chunk(session, ref, seq) or b""
        if len(data) >= 8 and len(data) >= header_length(data):
            break
    return safetensors_shapes(data)
