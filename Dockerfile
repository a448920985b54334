# canary-judge image: gunicorn serving the webhook on :8080 as a non-root user.
# Build stage makes wheels; the runtime stage installs only them (no compilers, no pip cache).
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
# UID/GID 10001 match runAsUser/runAsGroup in manifests/.
RUN groupadd --gid 10001 judge \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin judge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-compile /wheels/*.whl && rm -rf /wheels \
 && mkdir -p /etc/canary-judge/configs
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/canary-judge-metrics \
    CANARY_JUDGE_CONFIG_DIR=/etc/canary-judge/configs
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["canary-judge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
