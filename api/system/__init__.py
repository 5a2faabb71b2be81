"""Liveness, readiness and the server's version."""
