# The Tidings server as a container: `docker build -t tidings .`, then
#   docker run -d --name tidings -p 8080:8080 -v tidings-data:/data tidings
# Settings come from TIDINGS_* variables (docker run -e TIDINGS_REGISTRATION_OPEN=false) or
# /data/tidings.toml; see docs/configuration.md and docs/deploy.md. Put a TLS proxy in front
# (or mount a certificate and set TIDINGS_TLS_CERT / TIDINGS_TLS_KEY).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns the data volume; the server never runs as root.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tidings \
    && mkdir -p /data \
    && chown tidings:tidings /data \
    && chmod 0700 /data

# The server only (tidings[server]): no Kivy, no media or client crypto libraries.
WORKDIR /build
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install ".[server]" && rm -rf /build

WORKDIR /data
USER tidings
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/v1/health', timeout=4).status == 200 else 1)"]

CMD ["tidings", "serve", "--host", "0.0.0.0", "--data", "/data"]
