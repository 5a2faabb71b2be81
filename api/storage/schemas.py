"""Storage schemas: a team with its stored bytes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.admin_schemas import TeamRead


class TeamStorage(BaseModel):
    checkpoint_bytes: int = Field(description="Every checkpoint chunk (weights and resume state).")
    dataset_bytes: int = Field(description="The stored (normalised) content of every dataset.")
    total_bytes: int = Field(description="checkpoint_bytes + dataset_bytes.")
    max_storage_bytes: int | None = Field(description="The team's storage quota; null: none.")


class TeamDetail(TeamRead):
    storage: TeamStorage
