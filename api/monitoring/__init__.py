"""Prometheus: ``/metrics`` (HTTP traffic, and the job ledger read at scrape time)."""
