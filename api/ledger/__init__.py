"""The job ledger: job rows and their status changes (fenced by the attempt), events,
metrics, progress, scheduling -- what every domain and the worker read and write about a
job."""
