"""A classification job's report: confusion matrix and per-class scores (issue 24)."""
