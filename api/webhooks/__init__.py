"""Signed webhooks (Standard Webhooks): registrations and their delivery outbox (issue 15)."""
