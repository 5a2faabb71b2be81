"""Datasets: the service between the thin endpoints and the repository.

An upload is hashed, looked up (the same content with the same options is
the same dataset: the existing one comes back), parsed and validated in full,
normalised, and only then inserted; any problem raises before the first row
is written.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.datasets import codec, source
from api.datasets import repository as repo
from api.datasets.archive import ArchiveLimits
from api.datasets.errors import DatasetRejected, reject
from api.datasets.options import infer_format, options_hash, resolve, sniff_delimiter
from api.datasets.repository import Dataset
from api.datasets.schemas import (
    DatasetClass,
    DatasetColumn,
    DatasetFormat,
    DatasetModality,
    DatasetOptions,
    DatasetPage,
    DatasetRead,
    DatasetTask,
    TargetSummary,
)
from api.datasets.source import Source
from api.pagination import decode_cursor, encode_cursor
from api.problems import FieldProblem, ProblemError
from api.settings import Settings
from api.storage import repository as storage
from api.storage.quota import insufficient_storage
from api.teams.repository import Principal

_READ = 2**20


def team_scope(principal: Principal) -> str:
    return principal.team_id


def problem(exc: DatasetRejected) -> ProblemError:
    return ProblemError(
        exc.status,
        exc.title,
        exc.detail,
        errors=[FieldProblem(loc=i.loc, msg=i.msg, type=i.type) for i in exc.issues],
    )


def too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Upload too large",
        f"The file is larger than the upload limit of {limit} bytes (TRAINFORGE_MAX_UPLOAD_BYTES).",
    )


def hash_upload(file: BinaryIO, limit: int) -> tuple[int, str]:
    """The upload's size and sha256, read in chunks (nothing kept in memory); 413 past
    ``limit``. The file is left at its start for the parsers (``api.datasets.source``)."""
    digest = hashlib.sha256()
    size = 0
    file.seek(0)
    while chunk := file.read(_READ):
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        digest.update(chunk)
    file.seek(0)
    return size, digest.hexdigest()


def inferred_format(filename: str, data: Source, given: dict[str, Any]) -> DatasetFormat:
    """The format of an upload sent without ``format``."""
    return infer_format(filename, source.head(data, 65536), given)


def default_delimiter(
    fmt: DatasetFormat, filename: str, data: Source, given: dict[str, Any]
) -> None:
    """A csv sent without ``delimiter``: the one its name or header line shows (into ``given``)."""
    if fmt in (DatasetFormat.csv, DatasetFormat.text_csv) and not given.get("delimiter"):
        given["delimiter"] = sniff_delimiter(filename, source.head(data, 65536))


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_members=settings.max_archive_members,
        max_total_bytes=settings.max_dataset_bytes,
        max_ratio=settings.max_compression_ratio,
        max_image_pixels=settings.max_image_pixels,
    )


def parse(
    fmt: DatasetFormat, data: Source, opts: DatasetOptions, settings: Settings
) -> codec.ParsedDataset:
    """Parse and validate the whole upload (raises DatasetRejected)."""
    if not source.head(data, 1):
        raise reject("file", "the file is empty", "empty_file")
    limits = archive_limits(settings)
    if fmt == DatasetFormat.csv:
        from api.datasets.table import parse_csv

        parsed = parse_csv(data, opts)
    elif fmt == DatasetFormat.text_csv:
        from api.datasets.tabular import parse_text_csv

        parsed = parse_text_csv(data, opts)
    elif fmt == DatasetFormat.npz:
        from api.datasets.arrays import parse_npz

        parsed = parse_npz(data, opts, limits)
    else:
        from api.datasets.images import parse_image_zip  # Pillow is only loaded when needed

        parsed = parse_image_zip(data, opts, limits)
    if parsed.nbytes() > settings.max_dataset_bytes:
        raise reject(
            "file",
            f"the decoded dataset takes {parsed.nbytes()} bytes; at most "
            f"{settings.max_dataset_bytes} are accepted (TRAINFORGE_MAX_DATASET_BYTES)",
            "dataset_too_large",
        )
    return parsed


def create_dataset(
    session: Session,
    settings: Settings,
    principal: Principal,
    *,
    fmt: DatasetFormat,
    name: str,
    data: Source,
    sha256: str,
    size: int,
    given: dict[str, Any],
) -> tuple[Dataset, bool]:
    """The new dataset and True, or the team's existing one with this content and False."""
    team_id = team_scope(principal)
    try:
        opts = resolve(fmt, given)
        ohash = options_hash(fmt, opts)
        existing = repo.find_by_content(session, team_id, sha256, ohash)
        if existing is not None:
            return existing, False
        parsed = parse(fmt, data, opts, settings)
    except DatasetRejected as exc:
        raise problem(exc) from exc
    with codec.encode_file(parsed) as content:  # on disk: stored in chunks from the file
        meta, notes = codec.metadata(parsed), parsed.notes
        del parsed  # the decoded arrays are in the file now
        return _store(
            session, settings, principal, content, meta=meta, fmt=fmt, name=name,
            sha256=sha256, ohash=ohash, opts=opts, notes=notes,
            size=size,
        )  # fmt: skip


def _store(
    session: Session,
    settings: Settings,
    principal: Principal,
    content: codec.Encoded,
    *,
    meta: dict[str, Any],
    fmt: DatasetFormat,
    name: str,
    sha256: str,
    ohash: str,
    opts: DatasetOptions,
    notes: list[str],
    size: int,
) -> tuple[Dataset, bool]:
    team_id = team_scope(principal)
    try:  # the team's storage quota (api/storage): 507 before anything is written
        storage.check_quota(
            session,
            team_id,
            adding=content.size,
            what="This upload",
            default=settings.default_storage_quota_bytes,
        )
    except storage.StorageQuotaExceeded as exc:
        raise insufficient_storage(exc) from exc
    try:
        dataset = repo.create_dataset(
            session,
            content=content.chunks(),
            stored_bytes=content.size,
            team_id=team_id,
            created_by_key=principal.key_id,
            name=name,
            format=fmt.value,
            sha256=sha256,
            options_hash=ohash,
            size_bytes=size,
            stored_sha256=content.sha256,
            task=meta["task"],
            modality=meta["modality"],
            n_samples=meta["n_samples"],
            info=meta,
            options=opts.model_dump(mode="json"),
            notes=notes,
        )
    except IntegrityError:
        # A concurrent upload of the same content won the unique index: answer with it.
        session.rollback()
        existing = repo.find_by_content(session, team_id, sha256, ohash)
        if existing is None:
            raise
        return existing, False
    return dataset, True


def get_or_404(session: Session, principal: Principal, dataset_id: str) -> Dataset:
    dataset = repo.get_dataset(session, dataset_id, team_scope(principal))
    if dataset is None:
        raise ProblemError(404, "Not found", f"No dataset {dataset_id!r}.")
    return dataset


def delete_dataset(session: Session, principal: Principal, dataset_id: str) -> None:
    dataset = repo.get_dataset(session, dataset_id, team_scope(principal), lock="update")
    if dataset is None:
        raise ProblemError(404, "Not found", f"No dataset {dataset_id!r}.")
    jobs = repo.active_jobs_using(session, dataset)
    if jobs:
        raise ProblemError(
            409,
            "Dataset in use",
            f"Queued or running jobs use this dataset ({', '.join(jobs)}); cancel them or "
            "wait for them to end, then delete it.",
        )
    repo.delete_dataset(session, dataset)


def to_read(dataset: Dataset) -> DatasetRead:
    meta = dataset.info
    names: list[str] = meta.get("class_names") or []
    counts: list[int] = meta.get("class_counts") or []
    target = meta.get("target")
    return DatasetRead(
        id=dataset.id,
        name=dataset.name,
        format=DatasetFormat(dataset.format),
        sha256=dataset.sha256,
        size_bytes=dataset.size_bytes,
        stored_bytes=dataset.stored_bytes,
        task=DatasetTask(meta["task"]),
        task_inferred=bool(meta.get("task_inferred", False)),
        modality=DatasetModality(meta["modality"]),
        n_samples=meta["n_samples"],
        n_features=meta["n_features"],
        image_shape=meta.get("image_shape"),
        n_classes=meta["n_classes"],
        classes=[DatasetClass(name=n, count=c) for n, c in zip(names, counts, strict=True)],
        feature_names=meta.get("feature_names"),
        columns=[DatasetColumn.model_validate(c) for c in meta["columns"]]
        if meta.get("columns")
        else None,
        target=TargetSummary.model_validate(target) if target else None,
        options=DatasetOptions.model_validate(dataset.options),
        notes=list(dataset.notes or []),
        created_at=dataset.created_at,
    )


def list_page(
    session: Session, principal: Principal, cursor: str | None, limit: int
) -> DatasetPage:
    after = decode_cursor(cursor) if cursor else None
    rows = list(repo.list_datasets(session, team_scope(principal), limit=limit + 1, after=after))
    more = len(rows) > limit
    rows = rows[:limit]
    return DatasetPage(
        items=[to_read(d) for d in rows],
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )
