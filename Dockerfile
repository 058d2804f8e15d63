# Voice Trace Gateway container image.
#
#   docker build -t voice-trace-gateway .
#   docker run --rm -p 8080:8080 -e OTEL_TRACES_EXPORTER=otlp \
#     -e OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 voice-trace-gateway
#
# Configure it like any OTel SDK (OTEL_* env vars, LANGFUSE_* for the Langfuse exporter, VTG_* for
# gateway settings) or mount a declarative config file and set OTEL_CONFIG_FILE. The repo's
# default config is at /etc/voice-trace-gateway/otel-config.yaml (not active unless you point
# OTEL_CONFIG_FILE at it). Other subcommands run the same way: `docker run IMAGE simulate --url ...`.

ARG PYTHON_IMAGE=python:3.11.15-slim-trixie

# ---- build: install the package and its dependencies into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# pyproject.toml names README.md as the package readme, so the build needs it.
COPY pyproject.toml README.md ./
COPY gateway/ ./gateway/
RUN pip install . && pip check

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 vtg \
 && useradd --system --uid 10001 --gid vtg --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin vtg
COPY --from=build /opt/venv /opt/venv
COPY otel-config.yaml /etc/voice-trace-gateway/otel-config.yaml
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# /healthz answers while the process is alive; orchestrators should use /readyz for traffic.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
# SIGTERM (docker stop) makes the gateway end open sessions' spans and flush every exporter.
STOPSIGNAL SIGTERM
ENTRYPOINT ["voice-trace-gateway"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
