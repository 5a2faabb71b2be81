"""Storage schemas: a team with its stored bytes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.problems import Problem
from api.teams.schemas import TeamRead


class TeamStorage(BaseModel):
    checkpoint_bytes: int = Field(description="Every checkpoint chunk (weights and resume state).")
    dataset_bytes: int = Field(description="The stored (normalised) content of every dataset.")
    total_bytes: int = Field(description="checkpoint_bytes + dataset_bytes.")
    max_storage_bytes: int | None = Field(description="The team's storage quota; null: none.")


class TeamDetail(TeamRead):
    storage: TeamStorage


class StorageFigures(BaseModel):
    """A team's storage when a request would take it over its quota (a 507's `storage`)."""

    stored_bytes: int = Field(description="What the team stores now (checkpoints + datasets).")
    checkpoint_bytes: int = Field(description="Of which checkpoints.")
    dataset_bytes: int = Field(description="Of which datasets.")
    quota_bytes: int = Field(
        description="The team's max_storage_bytes, else the operator's default "
        "(TRAINFORGE_DEFAULT_STORAGE_QUOTA_BYTES)."
    )
    request_bytes: int = Field(
        description="What this request would store (an upload's stored, normalised size); "
        "0 for a job submitted while the team is full."
    )
    available_bytes: int = Field(description="quota_bytes - stored_bytes, at least 0.")


class StorageProblem(Problem):
    """507 Insufficient Storage: the team's storage quota, with its figures."""

    storage: StorageFigures
