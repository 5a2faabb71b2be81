"""The job list (GET /v1/jobs): a summary per job, `name` search; the full job stays at
GET /v1/jobs/{id}."""
