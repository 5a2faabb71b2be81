"""Hostile and broken uploads on PostgreSQL: a 4xx that says what is wrong, and nothing stored."""

from __future__ import annotations

import io
import secrets
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from api.app import create_app
from api.datasets.repository import Dataset
from api.db.blobs import BlobChunk
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from tests.api.test_datasets import digits_npz, image_zip, iris_csv, job_on, upload
from tests.conftest import FakeQueue

pytestmark = pytest.mark.integration

UPLOAD_LIMIT = 64 * 1024
DATASET_LIMIT = 8 * 2**20
MEMBER_LIMIT = 50


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Settings, str]]:
    """A client of a fresh team on the session's PostgreSQL, with small upload limits."""
    settings = Settings(
        home=tmp_path / "home",
        database_url=pg_url,
        broker_url="memory://",
        max_upload_bytes=UPLOAD_LIMIT,
        max_dataset_bytes=DATASET_LIMIT,
        max_archive_members=MEMBER_LIMIT,
    )
    upgrade(pg_url)
    with session_factory(pg_url)() as session:
        team = get_or_create_team(session, f"hostile-{secrets.token_hex(4)}")
        _, raw = create_api_key(session, team, "member")
        session.commit()
        team_id = team.id
    app = create_app(settings, queue=FakeQueue(settings))
    with TestClient(app, headers={"Authorization": f"Bearer {raw}"}) as client:
        yield client, settings, team_id


def stored(settings: Settings, team_id: str) -> tuple[int, int]:
    with session_factory(settings.resolved_database_url)() as session:
        n = session.scalar(select(func.count()).where(Dataset.team_id == team_id))
        chunks = session.scalar(
            select(func.count(BlobChunk.seq))
            .join(Dataset, Dataset.id == BlobChunk.dataset_id)
            .where(Dataset.team_id == team_id)
        )
    return int(n or 0), int(chunks or 0)


# --------------------------------------------------------------------------- builders


def _zip(members: dict[str, bytes], infos: list[zipfile.ZipInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info in infos or []:
            zf.writestr(info, b"/etc/passwd")
    return buf.getvalue()


def _png(size: tuple[int, int] = (8, 8), value: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, value).save(out, "PNG")
    return out.getvalue()


def _good_images() -> dict[str, bytes]:
    return {f"{c}/{i}.png": _png(value=40 * i) for c in ("a", "b") for i in range(3)}


def bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _good_images().items():
            zf.writestr(name, data)
        zf.writestr("a/bomb.png", b"\0" * (24 * 2**20))  # ~24 KB compressed, 1000x
    return buf.getvalue()


def wide_bomb() -> bytes:
    # Each member is under the ratio floor, together they pass the decoded-size limit.
    return _zip({**_good_images(), **{f"b/z{i}.png": b"\0" * 10**6 for i in range(9)}})


def many_members() -> bytes:
    return _zip({f"{'ab'[i % 2]}/{i}.png": _png() for i in range(MEMBER_LIMIT + 1)})


def symlink() -> bytes:
    info = zipfile.ZipInfo("a/link.png")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip(_good_images(), [info])


def encrypted() -> bytes:
    data = bytearray(_zip(_good_images()))
    at = data.find(b"PK\x01\x02")  # first central directory entry: set "encrypted"
    data[at + 8] |= 1
    return bytes(data)


def object_npz() -> bytes:
    buf = io.BytesIO()
    x = np.empty(4, dtype=object)
    x[:] = [{"a": 1}, [1], "s", None]
    np.savez(buf, x=x, y=np.array([0, 0, 1, 1]))
    return buf.getvalue()


def lying_npz() -> bytes:
    """x.npy declares 10**12 floats and holds 16 bytes: must not allocate them."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    npy.write(b"\0" * 16)
    y = io.BytesIO()
    np.save(y, np.array([0, 1]))
    return _zip({"x.npy": npy.getvalue(), "y.npy": y.getvalue()})


def csv_rows(*rows: str) -> bytes:
    return "\n".join(rows).encode()


Case = tuple[str, Callable[[], bytes], dict[str, Any], int, str, str]

CASES: list[Case] = [
    # (format, content, options, status, problem loc, problem type or text)
    ("csv", lambda: b"", {}, 422, "file", "empty_file"),
    ("csv", lambda: b"a,label\n", {}, 422, "file", "no_rows"),
    ("csv", lambda: b"x" * (UPLOAD_LIMIT + 10), {}, 413, "", "upload limit"),
    ("csv", lambda: b"x" * (3 * UPLOAD_LIMIT), {}, 413, "", "upload limit"),
    ("csv", lambda: csv_rows("a,b", "1,2", "3,4"), {}, 422, "label_column", "missing_column"),
    ("csv", lambda: csv_rows("a,b", "1,x", "2,x"), {"label_column": "c"}, 422, "label_column",
     "missing_column"),
    ("csv", lambda: csv_rows("f,label", "1,a", "abc,a", "2,b", "3,b"), {}, 422, "file",
     "feature_not_numeric"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2,a", "3,b"), {}, 422, "file", "class_too_small"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2,a", "3,a"), {}, 422, "file", "too_few_classes"),
    ("csv", lambda: csv_rows("f,label", "1,a", "nan,a", "2,b", "3,b"), {}, 422, "file",
     "missing_value"),
    ("csv", lambda: csv_rows("f,label", "1,a", "inf,a", "2,b", "3,b"), {"impute": "mean"}, 422,
     "file", "feature_not_finite"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2", "2,b", "3,b"), {}, 422, "file", "ragged_row"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2,", "2,b", "3,b"), {}, 422, "file",
     "missing_label"),
    ("csv", lambda: csv_rows("f,f,label", "1,2,a"), {}, 422, "file", "bad_header"),
    ("csv", lambda: b"f,label\n1,\xff\n", {}, 422, "file", "not_utf8"),
    ("csv", lambda: b"f,label\n1,a\x00\n", {}, 422, "file", "binary_file"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2,b"), {"text_column": "f"}, 422, "text_column",
     "option_not_applicable"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2,b"), {"delimiter": "x"}, 422, "delimiter",
     "invalid_delimiter"),
    ("csv", lambda: csv_rows("f,label", "1,a", "2,a", "3,b", "4,b"), {"task": "regression"}, 422,
     "label_column", "label_not_numeric"),
    ("text_csv", lambda: csv_rows("text,label", "hi,a", " ,a", "yo,b", "ho,b"), {}, 422, "file",
     "empty_text"),
    ("text_csv", lambda: csv_rows("body,label", "hi,a"), {}, 422, "text_column", "missing_column"),
    ("npz", object_npz, {}, 422, "file", "object_array"),
    ("npz", lying_npz, {}, 422, "file", "bad_npy"),
    ("npz", lambda: b"\x93NUMPY not a zip", {}, 422, "file", "not_a_zip"),
    ("npz", lambda: b"PK\x03\x04 truncated", {}, 422, "file", "bad_zip"),
    ("npz", lambda: _zip({"x.npy": b"", "other.npy": b""}), {}, 422, "file", "missing_array"),
    ("npz", lambda: digits_npz(n=40), {"layout": "sideways"}, 422, "layout", "enum"),
    ("image_zip", bomb, {}, 422, "file", "compression_ratio"),
    ("image_zip", wide_bomb, {}, 422, "file", "archive_too_large"),
    ("image_zip", many_members, {}, 422, "file", "too_many_members"),
    ("image_zip", lambda: _zip({**_good_images(), "../evil/x.png": _png()}), {}, 422, "file",
     "unsafe_path"),
    ("image_zip", lambda: _zip({**_good_images(), "/etc/x.png": _png()}), {}, 422, "file",
     "unsafe_path"),
    ("image_zip", lambda: _zip({**_good_images(), "a\\..\\x.png": _png()}), {}, 422, "file",
     "unsafe_path"),
    ("image_zip", symlink, {}, 422, "file", "symlink"),
    ("image_zip", encrypted, {}, 422, "file", "encrypted"),
    ("image_zip", lambda: _zip({**_good_images(), "a/9.png": b"not an image"}), {}, 422, "file",
     "bad_image"),
    ("image_zip", lambda: _zip({**_good_images(), "a/9.png": _png()[:40]}), {}, 422, "file",
     "bad_image"),
    ("image_zip", lambda: _zip({**_good_images(), "a/9.png": _png((9, 8))}), {}, 422,
     "image_size", "mixed_image_sizes"),
    ("image_zip", lambda: _zip({**_good_images(), "a/notes.txt": b"hi"}), {}, 422, "file",
     "bad_layout"),
    ("image_zip", lambda: _zip({"loose.png": _png(), **_good_images()}), {}, 422, "file",
     "bad_layout"),
    ("image_zip", lambda: _zip({}), {}, 422, "file", "empty_archive"),
    ("image_zip", lambda: _zip(_good_images()), {"image_size": "0,5"}, 422, "image_size",
     "invalid_image_size"),
    ("image_zip", lambda: _zip(_good_images()), {"task": "regression"}, 422, "task",
     "task_not_supported"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "content", "options", "status", "loc", "what"),
    CASES,
    ids=[f"{c[0]}-{c[5]}-{i}" for i, c in enumerate(CASES)],
)
def test_hostile_upload_is_rejected_and_nothing_is_stored(
    pg: tuple[TestClient, Settings, str],
    fmt: str,
    content: Callable[[], bytes],
    options: dict[str, Any],
    status: int,
    loc: str,
    what: str,
) -> None:
    client, settings, team_id = pg
    r = upload(client, content(), fmt, **options)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == status and problem["detail"]
    if loc:
        assert any(
            (e["loc"] == loc and what in (e["type"], e["msg"])) or what in e["type"]
            for e in problem["errors"]
        ), problem
    else:
        assert what in problem["detail"]
    assert stored(settings, team_id) == (0, 0)
    assert client.get("/v1/datasets").json()["items"] == []


def test_unknown_form_fields_are_rejected(pg: tuple[TestClient, Settings, str]) -> None:
    client, settings, team_id = pg
    r = upload(client, iris_csv(), "csv", label_column="species", labelcolumn="x")
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "labelcolumn"
    r = client.post("/v1/datasets", files={"format": (None, "csv")})  # multipart, no file
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "file"
    assert stored(settings, team_id) == (0, 0)


def test_an_upload_over_the_limit_is_cut_off_while_streaming(
    pg: tuple[TestClient, Settings, str],
) -> None:
    """No Content-Length and an endless body: 413 after reading about the limit, not more."""
    client, settings, team_id = pg
    app = client.app
    boundary = "tfboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="format"\r\n\r\ncsv\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    chunk = b"1,2,3\n" * 2000
    sent = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        body = head if sent == 1 else chunk
        if sent > 10_000:  # the test's own bound: the server should have stopped long before
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    token = client.headers["authorization"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/datasets",
        "raw_path": b"/v1/datasets",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", token.encode()),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }

    async def call() -> None:
        await app(scope, receive, send)  # type: ignore[arg-type]

    anyio.run(call)
    start = next(m for m in messages if m["type"] == "http.response.start")
    assert start["status"] == 413
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert b"upload limit" in body
    assert (sent - 1) * len(chunk) <= UPLOAD_LIMIT + 64 * 1024 + len(chunk)
    assert stored(settings, team_id) == (0, 0)


def test_a_good_upload_still_works_on_postgres(pg: tuple[TestClient, Settings, str]) -> None:
    client, settings, team_id = pg
    data = image_zip(per_class=4, size=(8, 8))
    assert len(data) < UPLOAD_LIMIT
    r = upload(client, data, "image_zip")
    assert r.status_code == 201, r.text
    assert stored(settings, team_id)[0] == 1
    assert upload(client, data, "image_zip").status_code == 200
    assert stored(settings, team_id)[0] == 1
    # A queued job holds the dataset (the JSON path query and row locks on PostgreSQL).
    dataset_id = r.json()["id"]
    job = client.post("/v1/jobs", json=job_on(dataset_id, model={"kind": "cnn", "channels": [2]}))
    assert job.status_code == 201, job.text
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 409
    assert client.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert stored(settings, team_id) == (0, 0)
