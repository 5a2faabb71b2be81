"""The user CLI (``trainforge submit``, ``follow``, ``jobs``, ...): a client of the public HTTP API.

It speaks HTTP only: import-linter forbids it ``api``, ``worker``, SQLAlchemy, Celery and
torch (``ml.spec`` is allowed), so ``import trainforge.client`` never pulls torch.
"""
