# The tickwire image: the worker (default command, as in the Procfile), `tickwire api` and
# `tickwire topics apply` all run from it. Production backends only: the local-stack extra
# (tansu, chDB, Valkey, PostgreSQL and FalkorDB wheels) is not installed.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --create-home tickwire \
    && install -d -o tickwire -g tickwire /var/lib/tickwire

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY agents ./agents
COPY schemas ./schemas
COPY topics.yaml ./
RUN pip install .

# The catalog and schemas stay in /app (a non-editable install does not carry them).
ENV TICKWIRE_TOPICS_FILE=/app/topics.yaml \
    TICKWIRE_SCHEMAS_DIR=/app/schemas \
    TICKWIRE_STATE_DIR=/var/lib/tickwire \
    TICKWIRE_API_HOST=0.0.0.0

USER tickwire
EXPOSE 6066
CMD ["tickwire", "worker", "-l", "info"]
