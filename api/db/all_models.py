"""Every model module, imported once so Alembic sees the whole schema."""

from __future__ import annotations

from api.db import audit, blobs, checkpoints, datasets, events, models
from api.db import model_exports as model_exports_models
from api.db import workers as workers_models
from api.db.models import Base
from api.joblogs import models as joblogs_models
from api.reports import models as reports_models
from api.sweeps import models as sweeps_models
from api.webhooks import models as webhooks_models

__all__ = ["Base", "audit", "blobs", "checkpoints", "datasets", "events", "models"]
__all__ += ["joblogs_models", "webhooks_models", "workers_models"]
__all__ += ["sweeps_models"]
__all__ += ["model_exports_models"]
__all__ += ["reports_models"]
