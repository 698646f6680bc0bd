# syntax=docker/dockerfile:1
# The event-gateway image. A builder stage turns the project and its dependencies into wheels
# and installs them into a virtualenv; the runtime stage copies only that virtualenv onto a slim
# Python and runs it as an unprivileged user (uid 10001).
#
#   docker build -t event-gateway .
#   docker run --rm -e GATEWAY_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 -e GATEWAY_SECRET_KEY=... \
#     -p 8080:8080 -p 9100:9100 event-gateway run --role all
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
# Every dependency has a manylinux wheel for CPython 3.11, so no compiler is needed here.
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels event-gateway

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="event-gateway" \
      org.opencontainers.image.description="Polls CRM APIs, publishes each change exactly once to Kafka, delivers signed webhooks." \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/gateway --create-home \
      --shell /usr/sbin/nologin gateway
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY schemas/ schemas/
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/gateway \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_API_HOST=0.0.0.0
USER 10001:10001
# 8080: admin API (GATEWAY_API_PORT); 9100: /metrics, /healthz, /readyz (GATEWAY_METRICS_PORT).
EXPOSE 8080 9100
# For plain Docker; on Kubernetes the chart's probes do this job.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_METRICS_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["event-gateway"]
CMD ["run"]
