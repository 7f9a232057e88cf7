# Production image: one eventlet server process per container (`python wsgi.py`; Socket.IO
# needs one process per server; run more containers behind a sticky load balancer to scale).
# Not gunicorn: gunicorn 27 has no eventlet worker any more.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=5000 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 10001 ingest

COPY setup.cfg pyproject.toml README.md ./
COPY ingest ./ingest
RUN pip install .

COPY migrations ./migrations
COPY web ./web
COPY wsgi.py ./

USER ingest
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/health').status == 200 else 1)"

# Migrate, then serve. Set DATABASE_URL, SECRET_KEY and ADMIN_TOKEN (and REDIS_URL for
# several nodes) in the environment.
# The app writes one access line per request (LOG_LEVEL=INFO), without query strings
# (which may carry Socket.IO's ?api_key=).
CMD ["sh", "-c", "flask --app wsgi db upgrade && exec python wsgi.py"]
