"""Sweeps: hyper-parameter search over a job spec, whose trials are ordinary jobs (issue 13)."""
