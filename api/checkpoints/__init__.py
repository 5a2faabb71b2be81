"""A job's checkpoints: rows, files in the blob store, warm-start sources."""
