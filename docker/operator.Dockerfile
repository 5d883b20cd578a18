# syntax=docker/dockerfile:1.7
# The WineMeUp operator (build context: the repository root):
#
#   docker build -f docker/operator.Dockerfile -t winemeup-operator:0.1.0 .
#
# It installs requirements/operator.lock only: the Kubernetes client, httpx, pydantic-settings
# and prometheus-client, no ML library. It copies services/operator/ alone (the operator imports
# nothing else of the repository) and runs `python -m services.operator`, as the chart's
# operator Deployment does (runners.managedBy=operator).
# The base image is Python 3.11 because the locks are resolved on 3.11 (requirements/compile.sh).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements/operator.lock /tmp/requirements.lock
# The lock's wheels, checked against its hashes (--require-hashes), are downloaded into a build
# cache shared by every image and build (never a layer): `pip download` skips a wheel that is
# already there with the right hash, then the install reads only that folder. (pip's own HTTP
# cache stores nothing behind a proxy that strips caching headers.) A proxy's CA bundle, when
# the build passes one as the secret pip-ca, is mounted for this step only.
RUN --mount=type=cache,id=winemeup-wheels,target=/var/cache/winemeup-wheels,sharing=locked \
    --mount=type=secret,id=pip-ca \
    set -eu; if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    wheels=/var/cache/winemeup-wheels; \
    /opt/venv/bin/pip download --no-deps --require-hashes --dest "$wheels" --requirement /tmp/requirements.lock; \
    /opt/venv/bin/pip install --no-index --find-links "$wheels" --no-deps --require-hashes \
      --requirement /tmp/requirements.lock
# Tests, headers, pip and setuptools out (docker/prune-venv.sh says what and why).
COPY docker/prune-venv.sh /usr/local/bin/prune-venv.sh
# kubernetes/aio (68 MB): the client's asyncio flavour, which the operator never imports (it uses
# the synchronous client; nothing outside kubernetes/aio imports it).
RUN prune-venv.sh /opt/venv && rm -rf /opt/venv/lib/python3*/site-packages/kubernetes/aio

FROM ${PYTHON_IMAGE} AS operator
RUN groupadd --gid 10001 winemeup \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin winemeup
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code belongs to root (read-only for the app user); skaffold's dev profile builds with
# APP_OWNER=10001 so that it can sync changed sources into a running container.
ARG APP_OWNER=0
COPY --chown=${APP_OWNER}:${APP_OWNER} services/__init__.py /app/services/__init__.py
COPY --chown=${APP_OWNER}:${APP_OWNER} services/operator/ /app/services/operator/
# It writes nothing: the release context comes from a ConfigMap, state from the API server.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["python", "-m", "services.operator"]
