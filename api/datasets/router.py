"""/v1/datasets: upload (multipart), list, read, delete -- scoped to the caller's team."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import PurePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request, Response, UploadFile, status
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Message

from api.datasets import service
from api.datasets.schemas import (
    ArrayLayout,
    DatasetFormat,
    DatasetPage,
    DatasetRead,
    DatasetTaskOption,
    ImputeOption,
)
from api.deps import SessionDep, SettingsDep
from api.problems import Problem
from api.storage.schemas import StorageProblem
from api.teams.auth import PrincipalDep

# Multipart framing and the small form fields, on top of the file itself.
FORM_OVERHEAD_BYTES = 64 * 1024


class _BodyTooLarge(Exception):
    pass


class UploadRoute(APIRoute):
    """Counts the request body while it streams in: past the limit, a 413 and nothing stored.

    The JSON ``BodyGuard`` passes multipart bodies through; this enforces
    ``max_upload_bytes`` (plus room for the form framing) before the form
    parser spools the file, so an endless body is cut off at the limit.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            if request.method != "POST":
                return await handler(request)
            upload_limit: int = request.app.state.settings.max_upload_bytes
            limit = upload_limit + FORM_OVERHEAD_BYTES
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise service.too_large(upload_limit)
            received = 0
            exceeded = False
            receive = request.receive

            async def counting() -> Message:
                nonlocal received, exceeded
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        exceeded = True
                        raise _BodyTooLarge
                return message

            try:
                return await handler(Request(request.scope, counting, request._send))
            except Exception:
                # The form parser turns our signal into a 400; say what it was.
                if exceeded:
                    raise service.too_large(upload_limit) from None
                raise

        return limited


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such dataset (or another team's)."}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

router = APIRouter(
    prefix="/v1/datasets", tags=["datasets"], responses=_ERRORS, route_class=UploadRoute
)


class DatasetUpload(BaseModel):
    """The multipart form of `POST /v1/datasets`. Options that do not apply to the
    format are rejected; see docs/datasets.md."""

    model_config = ConfigDict(extra="forbid")

    file: UploadFile = Field(description="The dataset file.")
    format: DatasetFormat | None = Field(
        None,
        description="csv, text_csv, npz or image_zip; default: inferred from the content and "
        "the file's name (a zip with .npy members is npz, another zip image_zip, any other "
        "file csv, or text_csv when text_column is sent).",
    )
    name: str | None = Field(
        None, min_length=1, max_length=200, description="Default: the file's name."
    )
    task: DatasetTaskOption | None = Field(
        None, description="auto (default): inferred from the labels and reported."
    )
    label_column: str | None = Field(
        None, max_length=200, description="csv, text_csv: the label column (default `label`)."
    )
    text_column: str | None = Field(
        None, max_length=200, description="text_csv: the text column (default `text`)."
    )
    feature_columns: str | None = Field(
        None,
        max_length=100_000,
        description="csv: comma-separated feature columns (default: all but the label).",
    )
    delimiter: str | None = Field(
        None, max_length=3, description="csv, text_csv: `,` (default), `;`, `|` or `tab`."
    )
    impute: ImputeOption | None = Field(
        None,
        description="csv, npz: `none` (default: a missing number is an error), or how each "
        "job fills missing numbers from its training split: `mean`, `median` (csv), "
        "`constant` (csv; 0).",
    )
    columns: str | None = Field(
        None,
        max_length=100_000,
        description="csv: column types that override the inferred ones, `name=type` separated "
        "by commas (`island=categorical,id=ignore`); types: number, categorical, boolean, "
        "date, text, ignore.",
    )
    image_size: str | None = Field(
        None,
        max_length=20,
        description="image_zip: resize every image to `H,W` (or one number for a square).",
    )
    color_mode: Literal["greyscale", "grayscale", "rgb"] | None = Field(
        None, description="image_zip: `rgb` (default) or `greyscale`."
    )
    layout: ArrayLayout | None = Field(
        None, description="npz: 4-D `x` as channels_last (N,H,W,C) or channels_first (N,C,H,W)."
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses={
        200: {"model": DatasetRead, "description": "The same content was already uploaded."},
        413: {"model": Problem, "description": "The file is over the upload limit."},
        507: {
            "model": StorageProblem,
            "description": "The upload would take the team over its storage quota "
            "(`storage`: its figures).",
        },
    },
)
def create_dataset(
    form: Annotated[DatasetUpload, Form(media_type="multipart/form-data")],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> DatasetRead:
    """Validate an uploaded dataset in full and store it (normalised, content-hashed)."""
    data = form.file.file  # spooled to disk by the form parser; never read into memory whole
    try:
        size, sha256 = service.hash_upload(data, settings.max_upload_bytes)
        name = form.name or PurePath(form.file.filename or "").name[:200] or "dataset"
        given = form.model_dump(exclude={"file", "format", "name"})
        fmt = form.format or service.inferred_format(form.file.filename or "", data, given)
        service.default_delimiter(fmt, form.file.filename or "", data, given)
        dataset, created = service.create_dataset(
            session, settings, principal, fmt=fmt, name=name, data=data, sha256=sha256,
            size=size, given=given,
        )  # fmt: skip
    finally:
        data.close()
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    if created:
        session.commit()
    else:
        response.status_code = status.HTTP_200_OK
    return service.to_read(dataset)


@router.get("", response_model=DatasetPage)
def list_datasets(
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DatasetPage:
    """The team's datasets, newest first."""
    return service.list_page(session, principal, cursor, limit)


@router.get("/{dataset_id}", response_model=DatasetRead, responses=_NOT_FOUND)
def get_dataset(dataset_id: str, session: SessionDep, principal: PrincipalDep) -> DatasetRead:
    """One dataset: what it holds (task, samples, classes, shape) and how it was read."""
    return service.to_read(service.get_or_404(session, principal, dataset_id))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        **_NOT_FOUND,
        409: {"model": Problem, "description": "A queued or running job uses it."},
    },
)
def delete_dataset(dataset_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    """Delete a dataset and its content; refused while a queued or running job uses it."""
    service.delete_dataset(session, principal, dataset_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
