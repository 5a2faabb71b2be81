# The dashboard's front-end packages, from the lockfile (no CDN at page load).
FROM node:20-slim AS ui
WORKDIR /ui
COPY api/ui/package.json api/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
# `resources.compile: true`: TorchInductor and Triton compile C/C++ at run time (Triton's
# launcher on CUDA, Inductor's kernels on CPU); the slim image has no compiler of its own.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
 && rm -rf /var/lib/apt/lists/*
# cuBLAS reads it once, at a process's first cuBLAS call: set for every process of the
# image, so that a worker's `deterministic: true` jobs work after any other CUDA job.
ENV CUBLAS_WORKSPACE_CONFIG=:4096:8
# The torch build: `cpu` (the default, small) or a CUDA build for GPU workers, e.g.
#   docker compose build --build-arg TORCH_VARIANT=cu128 worker
# (TORCH_VARIANT in .env does the same). Always the version pinned in constraints.txt:
# cu128 gives torch==2.13.0+cu128 from PyTorch's cu128 index, which brings its own CUDA
# 12.8 runtime, cuDNN and NCCL as pip packages; the host needs only the NVIDIA driver
# (>= 570 for CUDA 12.8) and the NVIDIA Container Toolkit (docs/gpu.md).
ARG TORCH_VARIANT=cpu
COPY pyproject.toml constraints.txt ./
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
      "$(grep -E '^torch==' constraints.txt)"
COPY api api
COPY worker worker
COPY ml ml
COPY trainforge trainforge
COPY trainforge_server trainforge_server
COPY migrations migrations
# The server distribution's project (its packages are links to the folders above).
COPY server server
COPY README.md ./
COPY --from=ui /ui/node_modules api/ui/node_modules
# torch is already there (the pin matches its +cpu/+cuXXX local version): pip keeps it.
# Editable, so the dashboard's static files and node_modules are served from /app/api/ui.
# The client (`trainforge`, the CLI) and the server with the worker's extras.
RUN pip install --no-cache-dir -c constraints.txt -e . -e './server[worker]'
ENV TRAINFORGE_HOME=/var/lib/trainforge
CMD ["trainforge", "api"]
