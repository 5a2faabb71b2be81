"""Validated settings, read from ``TRAINFORGE_*`` environment variables.

Shared by the API and the worker, so it imports no FastAPI. With no URLs set,
everything lives under ``TRAINFORGE_HOME``: a SQLite file and kombu's
filesystem broker, so a newcomer needs no server at all.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINFORGE_", extra="ignore")

    home: Path = Field(Path(".trainforge"), description="Embedded state: SQLite, broker, key.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in home.")
    broker_url: str | None = Field(None, description="Celery broker; default filesystem in home.")
    broker_poll_seconds: float = Field(
        0.05,
        gt=0,
        le=10,
        description="Embedded (filesystem) broker: how often an idle worker looks for a "
        "message. 0.05 s starts a job within ~50 ms for well under 1% of a core while idle.",
    )
    queue: str = Field("trainforge", description="Queue for CPU/auto jobs.")
    gpu_queue: str = Field("trainforge.cuda", description="Queue for jobs that ask for cuda.")
    lease_seconds: float = Field(30.0, gt=0, description="A running job's lease length.")
    heartbeat_seconds: float = Field(1.0, gt=0, description="Lease renewal and cancel poll.")
    sqlite_synchronous: Literal["normal", "full"] = Field(
        "normal",
        description="SQLite's synchronous mode under WAL. normal: a commit survives the "
        "process, not a power loss (the last commits may roll back; the file stays sound); "
        "full: every commit is synced to disk (slower metric writes and submits).",
    )
    metrics_flush_points: int = Field(500, ge=1, description="Flush the metric buffer at N.")
    metrics_flush_seconds: float = Field(2.0, gt=0, description="... or after T seconds.")
    metrics_buffer_limit: int = Field(100_000, ge=1, description="Bounded metric buffer.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="Intra-op threads per job (None: the cores other processes leave free "
        "when the job starts, at least 1; worker/torch_threads.py).",
    )
    db_idle_in_transaction_seconds: float = Field(
        30.0,
        gt=0,
        description="PostgreSQL ends a session idle inside a transaction this long, so a "
        "stalled process cannot hold the locks a takeover or a cancel needs.",
    )
    api_lock_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="PostgreSQL: the API's longest wait for a lock; past it the request is "
        "a 503 with Retry-After, not a hung connection.",
    )
    stalled_lock_seconds: float = Field(
        10.0,
        gt=0,
        description="PostgreSQL: the reconciler ends a session whose transaction has held "
        "an expired-lease job's row this long (a frozen worker).",
    )
    reconciler: bool = Field(True, description="Run the reconciler in each worker.")
    reconcile_seconds: float = Field(10.0, gt=0, description="Seconds between passes.")
    republish_after_seconds: float = Field(
        300.0, gt=0, description="Re-publish a job queued this long (its message may be lost)."
    )
    default_storage_quota_bytes: int = Field(
        20 * 2**30,
        ge=0,
        description="The storage quota (checkpoints and datasets) of a team whose own "
        "max_storage_bytes is not set; 0 turns the default off (such teams are unbounded).",
    )
    idle_claim_seconds: float = Field(
        5.0,
        ge=0,
        description="An idle worker looks for queued jobs in the SQL ledger this often and "
        "rings its own doorbell for one that waited this long (a lost message costs about "
        "twice this, not republish_after_seconds); 0 turns it off.",
    )
    database_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often a running worker checks that its database is reachable and "
        "at its code's schema; while it is not, the worker consumes no job message.",
    )
    # Devices (issue 27): what a worker offers, what a job may ask for.
    worker_devices: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Devices this worker offers to data-parallel jobs (resources.devices). "
        "None: the CUDA devices it sees, or on a host without one its CPU cores (a CPU "
        "'device' is one training process).",
    )
    device_pool: str | None = Field(
        None,
        max_length=200,
        description="Name of the device pool this worker draws from. None: a pool of its own. "
        "Worker processes of one host that set the same name share its devices: a job "
        "reserves its devices from the pool atomically when it is claimed.",
    )
    max_devices_per_job: int = Field(
        8,
        ge=1,
        le=64,
        description="The most devices (resources.devices) a job may ask for: the largest "
        "worker this deployment will have. A spec above it is refused with a 422.",
    )
    # Fault-injection tests switch a protection off to prove they can see the fault.
    # Never set these in a deployment.
    unsafe_no_fencing: bool = Field(False, description="Tests only: ignore stale attempts.")
    unsafe_ignore_max_restarts: bool = Field(False, description="Tests only: requeue forever.")
    unsafe_no_republish: bool = Field(
        False, description="Tests only: never re-ring a lost doorbell (no reconciler, no wake)."
    )
    # Operations (issue 15): /metrics, per-job logs, webhooks, worker presence.
    metrics_token: str | None = Field(
        None, description="When set, /metrics needs `Authorization: Bearer <this token>`."
    )
    job_log_max_lines: int = Field(
        5000, ge=10, description="Log lines kept per job; the oldest are dropped first."
    )
    worker_heartbeat_seconds: float = Field(
        10.0, gt=0, description="How often a worker records that it is alive (workers table)."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs that resolve to loopback, private, link-local or "
        "metadata addresses (off: such URLs are refused at registration and delivery).",
    )
    webhook_sender: bool = Field(True, description="Deliver webhooks from this worker.")
    webhook_poll_seconds: float = Field(1.0, gt=0, description="Outbox poll interval.")
    webhook_timeout_seconds: float = Field(5.0, gt=0, description="One delivery attempt's limit.")
    webhook_max_attempts: int = Field(6, ge=1, description="Attempts before a delivery fails.")
    webhook_retry_base_seconds: float = Field(
        10.0,
        gt=0,
        description="Retry n waits base·4^(n-1) seconds ±20% jitter: 10 s, 40 s, 160 s, "
        "640 s, 2560 s (about an hour over 6 attempts).",
    )
    # Load (issue 18): requests inside the app, a queue in front, connections behind.
    api_processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes `trainforge api` serves from (uvicorn workers on one port): "
        "one process runs its Python on one core at a time, so a host with spare cores "
        "takes more submits a second with more (issue 16).",
    )
    api_max_concurrent_requests: int = Field(
        4,
        ge=1,
        description="Requests under /v1 running at once in one API process (more only "
        "adds GIL contention: the event loop, and so /healthz, waits on the busy threads).",
    )
    api_max_waiting_requests: int = Field(
        256, ge=0, description="Requests that wait for a slot; beyond it: 503 + Retry-After."
    )
    api_queue_wait_seconds: float = Field(
        10.0, gt=0, description="Longest wait for a slot before a 503 + Retry-After."
    )
    api_openapi_warm_up: bool = Field(
        True,
        description="Read the query-string checks from the OpenAPI document in a thread at "
        "start-up (building the document once per process), so that no request waits ~0.5 s "
        "for it.",
    )
    api_stream_threads: int = Field(
        16,
        ge=1,
        description="Threads beyond the request slots: SSE polls, download chunks, audit "
        "writes. The API's SQL pool holds slots + these connections.",
    )
    db_pool_timeout_seconds: float = Field(
        10.0, gt=0, description="Longest wait for a pooled SQL connection (then a 503)."
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest JSON request body.")
    # Model export and predictions (issue 14).
    predict_max_instances: int = Field(
        1000, ge=1, description="Instances one POST /v1/jobs/{id}/predict may send (413 above)."
    )
    predict_cache_size: int = Field(
        8, ge=1, description="ONNX Runtime sessions an API process keeps (least recently used)."
    )
    max_upload_bytes: int = Field(
        100 * 2**20,
        ge=1024,
        description="Largest dataset upload (the file), counted as it streams.",
    )
    max_dataset_bytes: int = Field(
        1024 * 2**20,
        ge=1024,
        description="Largest decoded dataset: a zip's uncompressed members, the arrays stored.",
    )
    max_archive_members: int = Field(50_000, ge=1, description="Most files in an uploaded zip.")
    max_compression_ratio: float = Field(
        200.0, gt=1, description="Largest uncompressed/compressed ratio of a zip member."
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Largest image in an image_zip upload (width x height), read from its "
        "header before it is decoded.",
    )
    audit_retention_days: float = Field(
        90.0,
        ge=0,
        description="Audit rows older than this are deleted by the workers' reconciler; "
        "0 keeps them for ever.",
    )
    audit_anonymous_window_seconds: float = Field(
        60.0,
        gt=0,
        description="Anonymous 401s from one client address within this window are one "
        "audit row with a repeat count (a key-guessing client cannot flood the log).",
    )
    max_parameters: int = Field(
        200_000_000, ge=1, description="Most trainable parameters a job's model may have."
    )
    max_job_memory_bytes: int = Field(
        8 * 2**30,
        ge=2**20,
        description="Largest estimated training memory of a job (parameters, gradients, "
        "optimizer state, activations at the batch size, the dataset).",
    )
    max_runtime_seconds: int = Field(
        7 * 24 * 3600,
        ge=1,
        description="Operator ceiling on a job's limits.max_runtime_seconds, and the value a "
        "job that sets none gets.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'trainforge.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_transport(self) -> str | None:
        """kombu transport class for the broker URL; None: the URL's own."""
        return "api.broker:Transport" if self.resolved_broker_url.startswith("filesystem") else None

    @property
    def embedded(self) -> bool:
        return self.database_url is None and self.broker_url is None

    def broker_transport_options(self) -> dict[str, Any]:
        if not self.resolved_broker_url.startswith("filesystem"):
            # A visibility timeout longer than any job: Redis must not redeliver a
            # message whose (acks_late) task is still training.
            return {"visibility_timeout": 31 * 24 * 3600}
        folder = (self.home / "broker").resolve()
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # else kombu writes ./control
            "store_processed": False,
            # kombu polls the folder (1 s by default): a submitted job waited ~0.5-1 s.
            "polling_interval": self.broker_poll_seconds,
        }

    def ensure_home(self) -> None:
        """Create ``home`` owner-only (700) and, for the embedded SQLite file, the database
        owner-read/write (600): it holds key hashes and every team's data."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        if self.database_url is None:
            db = self.home / "trainforge.db"
            os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))  # SQLite's -wal/-shm copy it
            db.chmod(0o600)
        if self.resolved_broker_url.startswith("filesystem"):
            for key in ("data_folder_in", "processed_folder", "control_folder"):
                Path(self.broker_transport_options()[key]).mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
