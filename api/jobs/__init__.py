"""The jobs domain over HTTP: submit, read, list, cancel, retry, metrics, events, and the
spec's validation (router -> service -> schemas -> list_repository). The job rows and
their status changes are the ledger's (api.ledger), below every domain that acts on a
job; the routes here show a job with its checkpoints, logs and export, so they stand
above those domains."""
