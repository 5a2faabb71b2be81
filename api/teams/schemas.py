"""Bodies of the /v1/admin routes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class Role(StrEnum):
    admin = "admin"
    member = "member"


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    max_running_jobs: int | None = Field(
        None, ge=1, le=10_000, strict=True, description="None: no limit."
    )
    max_queued_jobs: int | None = Field(
        None, ge=1, le=1_000_000, strict=True, description="None: no limit."
    )
    max_storage_bytes: int | None = Field(
        None,
        ge=1,
        le=2**62,
        strict=True,
        description="Bytes of checkpoints and datasets the team may store; null: no limit.",
    )


class TeamQuotaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_running_jobs: int | None = Field(None, ge=1, le=10_000, strict=True)
    max_queued_jobs: int | None = Field(None, ge=1, le=1_000_000, strict=True)
    max_storage_bytes: int | None = Field(
        None,
        ge=1,
        le=2**62,
        strict=True,
        description="Bytes of checkpoints and datasets the team may store; null: no limit.",
    )


class TeamRead(BaseModel):
    id: str
    name: str
    max_running_jobs: int | None
    max_queued_jobs: int | None
    max_storage_bytes: int | None = None
    created_at: datetime


class TeamPage(BaseModel):
    items: list[TeamRead]
    next_cursor: str | None = None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1, max_length=100, description="The team's name.")
    role: Role = Role.member
    name: str | None = Field(None, max_length=100)
    expires_at: AwareDatetime | None = Field(
        None, description="Timezone-aware (a naive time is a 422); none = no expiry."
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _a_date_time_string(cls, value: object) -> object:
        # The document says an RFC 3339 string; lax pydantic would read 2000000000 as a time.
        if value is not None and not isinstance(value, str):
            raise ValueError("send an RFC 3339 date-time string, e.g. 2027-01-01T00:00:00Z")
        return value

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("expires_at is past the year 9999 once in UTC") from exc


class ApiKeyRead(BaseModel):
    id: str
    team_id: str
    role: Role
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key, shown this once and never again.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyRead]
    next_cursor: str | None = None


class AuditEntryRead(BaseModel):
    id: int
    at: datetime
    key_id: str | None
    team_id: str | None
    action: str
    resource: str
    outcome: int
    repeats: int = Field(
        1,
        description="How many requests this row stands for: anonymous 401s from one client "
        "within TRAINFORGE_AUDIT_ANONYMOUS_WINDOW_SECONDS share one row.",
    )


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: str | None


class WorkerRead(BaseModel):
    """A worker process, as its presence row and its pool's reservations show it."""

    id: str = Field(description="The worker's name (host and process id).")
    queues: list[str]
    alive: bool = Field(description="It recorded a heartbeat within the last minute.")
    started_at: datetime
    heartbeat_at: datetime
    devices: int = Field(description="Devices it offers (GPUs, or CPU process slots).")
    device_pool: str = Field(
        description="The pool its devices come from (its own name unless TRAINFORGE_DEVICE_POOL "
        "names a pool shared by several processes of its host)."
    )
    free_devices: list[int] = Field(
        description="Devices of its pool no running job holds, from the jobs' reservations."
    )
    reserved: dict[str, list[int]] = Field(
        description="Running job id -> the devices of this pool its attempt reserved."
    )


class WorkerPage(BaseModel):
    items: list[WorkerRead]
    next_cursor: str | None = Field(None, description="Always null: every worker is listed.")
