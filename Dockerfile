# The dashboard's front-end packages, from the lockfile (no CDN at page load).
FROM node:20-slim AS ui
WORKDIR /ui
COPY api/ui/package.json api/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
# The torch build: `cpu` (the default, small) or a CUDA build for GPU workers, e.g.
#   docker compose build --build-arg TORCH_VARIANT=cu128 worker
# (TORCH_VARIANT in .env does the same). Always the version pinned in constraints.txt.
ARG TORCH_VARIANT=cpu
COPY pyproject.toml constraints.txt ./
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
      "$(grep -E '^torch==' constraints.txt)"
COPY api api
COPY worker worker
COPY ml ml
COPY trainforge trainforge
COPY migrations migrations
COPY --from=ui /ui/node_modules api/ui/node_modules
# torch is already there (the pin matches its +cpu/+cuXXX local version): pip keeps it.
# Editable, so the dashboard's static files and node_modules are served from /app/api/ui.
RUN pip install --no-cache-dir -c constraints.txt -e '.[worker]'
ENV TRAINFORGE_HOME=/var/lib/trainforge
CMD ["trainforge", "api"]
