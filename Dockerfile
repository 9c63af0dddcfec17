# The tickwire image: the worker (default command, as in the Procfile), `tickwire api` and
# `tickwire topics apply` all run from it. Base install + the `worker` extra, from the hashed lock;
# not the local-stack extra (tansu, chDB, Valkey, PostgreSQL and FalkorDB servers), nor bench/ or tests/.
#
# The base image is pinned by version; pin it by digest too for a reproducible build:
#   docker buildx imagetools inspect python:3.11.12-slim-bookworm   # prints "Digest: sha256:…"
#   FROM python:3.11.12-slim-bookworm@sha256:…
# (docs/production.md, "Pinning images"). tests/stack/test_image.py builds what this file installs
# without Docker (a venv, the files the COPY lines take, the same pip commands) and runs it.
FROM python:3.11.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --create-home tickwire \
    && install -d -o tickwire -g tickwire /var/lib/tickwire

WORKDIR /app
# Dependencies first, from the lock only (every file checked against its sha256): a change of the
# source does not reinstall them. Regenerate the lock with `python requirements/compile.py`.
COPY requirements/worker.lock requirements/worker.lock
RUN pip install --require-hashes -r requirements/worker.lock

# Then tickwire itself, without dependencies (the lock has them), not editable.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY agents ./agents
COPY schemas ./schemas
COPY topics.yaml ./
RUN pip install --no-deps .

# The catalog and schemas stay in /app (a non-editable install does not carry them).
ENV TICKWIRE_TOPICS_FILE=/app/topics.yaml \
    TICKWIRE_SCHEMAS_DIR=/app/schemas \
    TICKWIRE_STATE_DIR=/var/lib/tickwire \
    TICKWIRE_API_HOST=0.0.0.0 \
    TICKWIRE_API_PORT=6066

USER tickwire
EXPOSE 6066
# Liveness of the worker and of `tickwire api` alike: /health/live on the port the process serves (the compose
# services inherit this). Never /health: a store that is down pauses a stage, it is no reason to restart.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ['TICKWIRE_API_PORT'], timeout=4)"]
CMD ["tickwire", "worker", "-l", "info"]
