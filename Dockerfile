# One image for every Feedsync service: worker, beat, listener, api, flower, migrate.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY config ./config
COPY feeds ./feeds
COPY worker ./worker
COPY migrations ./migrations
RUN pip install . \
    && useradd --create-home --uid 10001 feedsync \
    && mkdir -p /data/export \
    && chown feedsync /data/export
USER feedsync

# API and dashboard, Prometheus metrics of a worker, Flower.
EXPOSE 8000 9808 5555
CMD ["python", "-m", "worker", "run", "--host", "0.0.0.0"]
