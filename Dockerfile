FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY api api
COPY worker worker
COPY ml ml
COPY trainforge trainforge
COPY migrations migrations
# For GPUs, install the CUDA build of the pinned torch instead of the CPU one.
RUN pip install --no-cache-dir -c constraints.txt '.[worker]'
ENV TRAINFORGE_HOME=/var/lib/trainforge
CMD ["trainforge", "api"]
