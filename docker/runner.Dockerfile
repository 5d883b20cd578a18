# syntax=docker/dockerfile:1.7
# One runner image per model, parameterised by MODEL (build context: the repository root):
#
#   docker build -f docker/runner.Dockerfile --build-arg MODEL=lightgbm -t winemeup-runner-lightgbm:0.1.0 .
#
# Why our own Dockerfile and not `bentoml containerize` of the bentos: the seven images then
# share every layer but the last (the same pinned requirements.lock, base image and code as
# the router), so a cluster pulls or `kind load`s the 1.3 GB ML stack once, not seven times;
# the user, UID and writable paths are ours, which the chart's readOnlyRootFilesystem and
# emptyDir mounts rely on; and the build needs no BentoML-generated Dockerfile or base image.
# The model is the same store entry the bento `winemeup-runner-<model>` packs, exported with
# `bentoml models export` into build/model-store/<model>.bentomodel and imported here: the
# image never starts without its model, and /readyz stays 503 until it is loaded.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --requirement /tmp/requirements.lock

FROM deps AS model
ARG MODEL
ENV BENTOML_HOME=/opt/winemeup/bentoml BENTOML_DO_NOT_TRACK=True
COPY build/model-store/${MODEL}.bentomodel /tmp/${MODEL}.bentomodel
COPY docker/import-models.sh /usr/local/bin/import-models.sh
# import-models.sh opens the 0700 directory `bentoml models import` makes: the pod runs as 10001.
RUN test -n "${MODEL}" \
    && import-models.sh /opt/venv/bin/bentoml "/tmp/${MODEL}.bentomodel" \
    && /opt/venv/bin/bentoml models get "${MODEL}:latest"

FROM ${PYTHON_IMAGE} AS runner
ARG MODEL
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 winemeup \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin winemeup \
    && mkdir -p /opt/winemeup/bentoml/models /opt/winemeup/bentoml/bentos /opt/winemeup/bentoml/envs \
                /opt/winemeup/bentoml/tmp /opt/winemeup/bentoml/prometheus_multiproc_dir
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code belongs to root (read-only for the app user); skaffold's dev profile builds with
# APP_OWNER=10001 so that it can sync changed sources into a running container.
ARG APP_OWNER=0
COPY --chown=${APP_OWNER}:${APP_OWNER} winemeup/ /app/winemeup/
COPY --chown=${APP_OWNER}:${APP_OWNER} services/ /app/services/
# The model layer comes last: it is the only one that differs between the seven images.
COPY --from=model --chown=0:0 /opt/winemeup/bentoml/models/ /opt/winemeup/bentoml/models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BENTOML_HOME=/opt/winemeup/bentoml \
    BENTOML_DO_NOT_TRACK=True \
    WINEMEUP_RUNNER_MODEL=${MODEL}
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=2)"]
CMD ["bentoml", "serve", "services.runner.service:ModelRunner", "--host", "0.0.0.0", "--port", "3000"]
