"""Per-job logs: what the engine and the worker said while running a job (issue 15)."""
