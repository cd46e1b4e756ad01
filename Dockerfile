# The demo monolith (and, as they land, the other parts) in one image.
# Build: docker build -t strangler .   Run: see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STRANGLER_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY legacy_monolith ./legacy_monolith
COPY strangler_proxy ./strangler_proxy
COPY extracted ./extracted
COPY analysis ./analysis
COPY strangler ./strangler
# Exactly what was tested: every package from the lock, checked against its hashes; then
# the project itself with no dependency resolution (setuptools and wheel come from the lock).
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --no-deps --no-build-isolation . \
    && pip check \
    && useradd --create-home --uid 1000 shop && mkdir -p /data && chown shop /data

USER shop
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["strangler", "monolith", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
