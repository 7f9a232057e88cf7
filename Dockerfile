# Production image: one eventlet server process per container (`python wsgi.py`; Socket.IO
# needs one process per server; run more containers behind a sticky load balancer to scale).
# Not gunicorn: gunicorn 27 has no eventlet worker any more.
FROM python:3.11-slim AS base

# DATA_DIR is the instance folder: the SQLite database (without DATABASE_URL) and the
# generated admin token and secret key (without ADMIN_TOKEN / SECRET_KEY) live there.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=5000 \
    DATA_DIR=/data \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The one folder the non-root user writes; /app stays root's.
RUN groupadd --gid 10001 ingest \
    && useradd --create-home --uid 10001 --gid 10001 ingest \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && chmod 0700 /data

COPY setup.cfg pyproject.toml README.md ./
COPY ingest ./ingest
RUN pip install .

COPY migrations ./migrations
COPY web ./web
COPY wsgi.py ./

# Numeric, so that Kubernetes' runAsNonRoot can check it (user `ingest`).
USER 10001:10001
# Declared after the chown so a new volume starts owned by `ingest`.
VOLUME ["/data"]
EXPOSE 5000
# At PORT, whatever it is set to; any error or a 503 (database down) exits non-zero.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['PORT'], timeout=2)"]

# Migrate, then serve. Without DATABASE_URL it runs SQLite in /data (mount a volume there
# to keep it); for production set DATABASE_URL, SECRET_KEY and ADMIN_TOKEN (and REDIS_URL
# for several nodes) in the environment.
# The app writes one access line per request (LOG_LEVEL=INFO), without query strings
# (which may carry Socket.IO's ?api_key=).
CMD ["sh", "-c", "flask --app wsgi db upgrade && exec python wsgi.py"]
