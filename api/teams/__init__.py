"""Teams, API keys, quotas and the audit log; the /v1/admin routes."""
