#!/usr/bin/env bash
# Pre-release: the schema is one initial migration, regenerated from the models.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/0001_initial_schema.py
.venv/bin/python -c "from api.db.migrate import revision; revision('sqlite:///$tmp/gen.db', 'initial schema')"
mv migrations/versions/*_initial_schema.py migrations/versions/0001_initial_schema.py
.venv/bin/ruff format -q migrations/versions/0001_initial_schema.py
.venv/bin/ruff check -q --fix migrations/versions/0001_initial_schema.py || true
rm -rf "$tmp"
