"""``Client``: your team's jobs, sweeps and datasets on one Trainforge server."""

from __future__ import annotations

import io
import os
import secrets
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

from trainforge.sdk import specfile
from trainforge.sdk.config import Config, resolve
from trainforge.sdk.errors import AmbiguousId, InvalidInput, NotFound
from trainforge.sdk.jobs import Job
from trainforge.sdk.transport import READ_TIMEOUT, RETRIES, Http

PAGE_SIZE = 100
ID_LENGTH = 32
MIN_PREFIX = 6
SUFFIX_FORMATS = {".csv": "csv", ".npz": "npz", ".zip": "image_zip"}


def checked_version(version: str) -> str:
    """The server's version; a ``UserWarning`` when its major differs from this SDK's."""
    from trainforge.version import __version__

    if version.split(".")[0] != __version__.split(".")[0]:
        warnings.warn(
            f"the server runs trainforge {version}, this client is {__version__}: "
            f"install the server's (pip install 'trainforge=={version}')",
            stacklevel=3,
        )
    return version


def list_params(**filters: Any) -> dict[str, Any]:
    """A job list's query: the filters given (``sweep`` is ``sweep_id``), a page size."""
    params: dict[str, Any] = {"limit": filters.pop("page_size", PAGE_SIZE)}
    for key, value in filters.items():
        if value is not None:
            params["sweep_id" if key == "sweep" else key] = value
    return params


def make_config(url: str | None, api_key: str | None) -> Config:
    """The server and key: the arguments, else the environment and the config files."""
    found = resolve()
    return Config(
        (url or found.url).rstrip("/"),
        api_key or found.api_key,
        "the api_key argument" if api_key else found.key_source,
    )


def upload_form(
    data: Any, label: str | None, name: str | None, format: str | None, fields: dict[str, str]
) -> tuple[dict[str, str], tuple[str, Any, str] | Path]:
    """``POST /v1/datasets``'s form and its file: (filename, bytes, type) for a DataFrame,
    else the path to open (``InvalidInput`` when its format cannot be told)."""
    form = {k: v for k, v in {"label_column": label, **fields}.items() if v is not None}
    if hasattr(data, "to_csv"):  # a DataFrame
        content = io.BytesIO(data.to_csv(index=False).encode())
        form["format"] = format or "csv"
        form["name"] = name or "dataframe"
        return form, (f"{name or 'dataframe'}.csv", content, "text/csv")
    path = Path(data)
    chosen = format or SUFFIX_FORMATS.get(path.suffix.lower())
    if chosen is None:
        raise InvalidInput(f"{path}: say its format= (csv, text_csv, npz or image_zip)")
    form["format"] = chosen
    if name is not None:
        form["name"] = name
    return form, path


def open_upload(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None


def _pages(http: Http, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item of a cursor-paginated list, page after page."""
    cursor: str | None = None
    while True:
        page = http.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        yield from page.get("items") or []
        cursor = page.get("next_cursor")
        if not cursor:
            return


class Client:
    """A connection to one server, as one team (the API key's).

    ``url`` and ``api_key`` default to ``TRAINFORGE_URL`` / ``TRAINFORGE_API_KEY``, then the
    file ``trainforge login`` writes, then ``http://127.0.0.1:8000`` and the key file that
    ``trainforge up`` writes (``$TRAINFORGE_HOME/api-key``). ``timeout``: seconds to wait for
    an answer (connecting: at most 5). ``retries``: how often a request is sent again after a
    failed connection -- and a GET or a submit after a timeout or a 502/503/504 (see
    trainforge/sdk/transport.py). Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = READ_TIMEOUT,
        retries: int = RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = make_config(url, api_key)
        self.http = Http(config, timeout=timeout, retries=retries, transport=transport)
        self.sweeps = Sweeps(self.http)
        self.datasets = Datasets(self.http)

    @property
    def url(self) -> str:
        return self.http.config.url

    def __repr__(self) -> str:
        return f"<trainforge.Client {self.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def server_version(self) -> str:
        """The server's release (``GET /v1/version``); a ``UserWarning`` when its major
        version differs from this SDK's (the HTTP API may have changed)."""
        return checked_version(str(self.http.get("/v1/version")["version"]))

    def submit(
        self,
        spec: str | os.PathLike[str] | Mapping[str, Any],
        *,
        set: Mapping[str, Any] | None = None,
        name: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a job. ``spec``: a YAML/JSON file (a bare spec or ``{spec, name, priority}``,
        as the CLI takes) or the spec as a dict. ``set``: overrides by dotted path,
        ``{"optimizer.lr": 3e-4}``. Every call sends its own ``Idempotency-Key`` (or
        ``idempotency_key``), so its retries never queue a second job.
        Raises ``InvalidSpec`` with every problem of the spec."""
        sub = self._submission(spec, set)
        if name is not None:
            sub.name = name
        if priority is not None:
            sub.priority = priority
        key = idempotency_key or f"sdk-{secrets.token_hex(16)}"
        data = self.http.post("/v1/jobs", json_body=sub.body(), headers={"Idempotency-Key": key})
        return Job(self.http, data)

    def validate(
        self,
        spec: str | os.PathLike[str] | Mapping[str, Any],
        *,
        set: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check a spec without queueing it: ``{"spec": resolved, "plan": {...}}``."""
        sub = self._submission(spec, set)
        result: dict[str, Any] = self.http.post("/v1/specs/validate", json_body={"spec": sub.spec})
        return result

    @staticmethod
    def _submission(
        spec: str | os.PathLike[str] | Mapping[str, Any], sets: Mapping[str, Any] | None
    ) -> specfile.Submission:
        if isinstance(spec, Mapping):
            body = specfile.copy_plain(dict(spec))
            if "spec" in body and set(body) <= {"spec", "name", "priority"}:
                sub = specfile.Submission(spec=body["spec"], name=body.get("name"),
                                          priority=body.get("priority"))  # fmt: skip
            else:
                sub = specfile.Submission(spec=body)
        elif isinstance(spec, str | os.PathLike):
            sub = specfile.load(Path(spec))
        else:
            raise InvalidInput(f"spec: a file path or a dict, not {type(spec).__name__}")
        for key, value in (sets or {}).items():
            specfile.apply_value(sub.spec, specfile.split_path(key), value, f"set[{key!r}]")
        return sub

    def job(self, job_id: str) -> Job:
        """One job by its id, or the first 6+ characters of it when they are unique in your
        team (``AmbiguousId`` lists the candidates; ``NotFound`` if none)."""
        return Job(self.http, self.http.get(f"/v1/jobs/{resolve_job_id(self.http, job_id)}"))

    def jobs(
        self,
        status: str | None = None,
        *,
        name: str | None = None,
        sweep: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[Job]:
        """Your team's jobs, newest first, fetched a page at a time as you iterate."""
        params = list_params(status=status, name=name, sweep=sweep, page_size=page_size)
        for item in _pages(self.http, "/v1/jobs", params):
            yield Job(self.http, item)


def resolve_job_id(http: Http, text: str) -> str:
    """A full job id from an id or a unique prefix of 6 or more hex digits."""
    params = prefix_query(text)
    return text.strip() if params is None else picked_id(text, http.get("/v1/jobs", params=params))


def prefix_query(text: str) -> dict[str, Any] | None:
    """The job list's query that finds the ids starting with ``text``; None: ``text`` is
    taken as a whole id (a full id, or something the server will answer 404 for)."""
    text = text.strip()
    if len(text) >= ID_LENGTH or len(text) < MIN_PREFIX or not _is_hex(text):
        return None
    return {"id_prefix": text.lower(), "limit": 10}


def picked_id(text: str, page: dict[str, Any]) -> str:
    """The one id of that query's answer, or ``NotFound`` / ``AmbiguousId``."""
    text = text.strip()
    items: list[dict[str, Any]] = page.get("items") or []
    if len(items) == 1:
        return str(items[0]["id"])
    if not items:
        raise NotFound(f"no job of your team has an id starting with {text}", status=404)
    shown = ", ".join(f"{i['id']} ({i.get('name') or '-'}, {i.get('status')})" for i in items)
    more = " and more" if page.get("next_cursor") else ""
    raise AmbiguousId(f"{text} starts several job ids: {shown}{more}", items)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


class Sweep:
    """A hyper-parameter sweep; ``data`` is ``GET /v1/sweeps/{id}``'s JSON."""

    def __init__(self, http: Http, data: dict[str, Any]) -> None:
        self._http, self.data = http, data

    def __repr__(self) -> str:
        return f"<Sweep {self.id} {self.status}>"

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data.get("status"))

    def refresh(self) -> Sweep:
        self.data = self._http.get(f"/v1/sweeps/{self.id}")
        return self

    def trials(self) -> list[Job]:
        """Its trials, each an ordinary job (with ``params`` in ``data``)."""
        items = self._http.get(f"/v1/sweeps/{self.id}/trials")["items"]
        return [Job(self._http, item) for item in items]

    def cancel(self) -> Sweep:
        self.data = self._http.post(f"/v1/sweeps/{self.id}/cancel")
        return self


class Sweeps:
    def __init__(self, http: Http) -> None:
        self._http = http

    def create(
        self,
        spec: str | os.PathLike[str] | Mapping[str, Any],
        parameters: Mapping[str, Any],
        **fields: Any,
    ) -> Sweep:
        """Start a sweep: ``spec`` (a file or dict, as ``submit`` takes), ``parameters``
        (``{"optimizer.lr": {"kind": "log_uniform", "low": 1e-3, "high": 0.3}}``), and any
        field of docs/sweeps.md (``objective``, ``algorithm``, ``max_trials``, ``name``...)."""
        sub = Client._submission(spec, None)
        body = {"spec": sub.spec, "parameters": dict(parameters), **fields}
        return Sweep(self._http, self._http.post("/v1/sweeps", json_body=body))

    def get(self, sweep_id: str) -> Sweep:
        return Sweep(self._http, self._http.get(f"/v1/sweeps/{sweep_id}"))

    def __iter__(self) -> Iterator[Sweep]:
        for item in _pages(self._http, "/v1/sweeps", {"limit": PAGE_SIZE}):
            yield Sweep(self._http, item)


class Datasets:
    def __init__(self, http: Http) -> None:
        self._http = http

    def upload(
        self,
        data: Any,
        *,
        label: str | None = None,
        name: str | None = None,
        format: str | None = None,
        **fields: str,
    ) -> dict[str, Any]:
        """Upload a dataset: a pandas DataFrame (sent as CSV) or a file (``.csv``, ``.npz``,
        ``.zip`` of images; ``format`` says otherwise, e.g. ``text_csv``). ``label``: the
        label column. Other form fields of ``POST /v1/datasets`` (``task``, ``delimiter``,
        ``text_column``...) pass through ``fields``. Returns the dataset (its ``id`` goes in
        a spec as ``{"kind": "uploaded", "dataset_id": id}``)."""
        form, file = upload_form(data, label, name, format, fields)
        if not isinstance(file, Path):
            return dict(self._http.post("/v1/datasets", data=form, files={"file": file}))
        with open_upload(file) as handle:
            upload = {"file": (file.name, handle, "application/octet-stream")}
            return dict(self._http.post("/v1/datasets", data=form, files=upload))

    def get(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._http.get(f"/v1/datasets/{dataset_id}"))

    def delete(self, dataset_id: str) -> None:
        """``Conflict`` while a job uses it."""
        self._http.request("DELETE", f"/v1/datasets/{dataset_id}")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from _pages(self._http, "/v1/datasets", {"limit": PAGE_SIZE})
