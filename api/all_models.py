"""Every model module, imported once so Alembic sees the whole schema.

It imports every domain's tables, so it stands above the domains (not in the kernel,
api.db, which imports none)."""

from __future__ import annotations

from api.checkpoints import repository as checkpoints
from api.datasets import repository as datasets
from api.db import blobs, models
from api.db.models import Base
from api.joblogs import models as joblogs_models
from api.ledger import events
from api.ledger import models as ledger_models
from api.ledger import workers as workers_models
from api.predict import repository as model_exports_models
from api.reports import models as reports_models
from api.sweeps import models as sweeps_models
from api.teams import audit
from api.teams import models as teams_models
from api.webhooks import models as webhooks_models

__all__ = ["Base", "audit", "blobs", "checkpoints", "datasets", "events", "models"]
__all__ += ["joblogs_models", "webhooks_models", "workers_models"]
__all__ += ["sweeps_models"]
__all__ += ["model_exports_models"]
__all__ += ["reports_models"]
__all__ += ["ledger_models", "teams_models"]
