# syntax=docker/dockerfile:1.7
# The Streamlit UI (build context: the repository root):
#
#   docker build -f docker/ui.Dockerfile -t winemeup-ui:0.1.0 .
#
# It installs requirements/ui.lock only: Streamlit, httpx and pydantic-settings with their
# dependencies, and no ML library. The UI talks to the router over HTTP and imports from
# winemeup/ only the feature schema and the model names (winemeup.runtimes imports a framework
# only when a model is loaded, which the UI never does).
# The base image is Python 3.11 because the locks are resolved on 3.11 (requirements/compile.sh).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements/ui.lock /tmp/requirements.lock
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
RUN prune-venv.sh /opt/venv

FROM ${PYTHON_IMAGE} AS ui
RUN groupadd --gid 10001 winemeup \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin winemeup
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code belongs to root (read-only for the app user); skaffold's dev profile builds with
# APP_OWNER=10001 so that it can sync changed sources into a running container.
ARG APP_OWNER=0
COPY --chown=${APP_OWNER}:${APP_OWNER} winemeup/ /app/winemeup/
COPY --chown=${APP_OWNER}:${APP_OWNER} ui/ /app/ui/
# Streamlit writes its config and caches under $HOME: /tmp, an emptyDir in the cluster.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    STREAMLIT_SERVER_PORT=8501 \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=2)"]
CMD ["streamlit", "run", "ui/app.py"]
