"""The help of ``trainforge admin``'s quota options (the command: trainforge/operator_cmd.py;
the work: api/teams/admin_service.py)."""

from __future__ import annotations

QUOTA_HELP = {
    "max_running_jobs": "jobs of the team that may run at once ('none': no limit)",
    "max_queued_jobs": "queued jobs the team may have; more is a 429 ('none': no limit)",
    "max_storage_bytes": "bytes of checkpoints and datasets the team may store, e.g. 50GB or "
    "500GiB; an upload past it is a 507, a spec whose checkpoints cannot fit is a 422, a "
    "running job at it keeps only its last and best checkpoints before it fails ('none': no limit)",
}
