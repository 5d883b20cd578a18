# syntax=docker/dockerfile:1.7
# The router image, in two flavours (build context: the repository root):
#   --target router          the routing service only, from requirements/router.lock: the
#                            accelerated (ONNX) path, no BentoML and no ML framework. Every
#                            model lives in a runner.
#   --target router-models   the router plus the model store baked in, for models placed
#                            inline (the chart switches to it when a model is inline), from
#                            requirements/router-models.lock: the ONNX artifact serves, and
#                            BentoML with LightGBM, xgboost-cpu, CatBoost and scikit-learn are
#                            the fallback when an artifact is missing or fails its parity check.
# The model store enters as exported BentoML models in build/model-store/<model>.bentomodel
# (k8s/build-images.sh exports them with `bentoml models export`).
#
#   docker build -f docker/router.Dockerfile --target router -t winemeup-router:0.1.0 .
#   docker build -f docker/router.Dockerfile --target router-models -t winemeup-router-models:0.1.0 .
#
# The base image is Python 3.11 because the locks are resolved on 3.11 (requirements/compile.sh).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- dependencies: each flavour's own lock into a virtual environment ---------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements/router.lock /tmp/requirements.lock
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

FROM ${PYTHON_IMAGE} AS deps-models
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY requirements/router-models.lock /tmp/requirements.lock
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

# ---- models: exported models imported into a BentoML model store ------------------------------
FROM deps-models AS models
ARG MODELS="lightgbm xgboost catboost random_forest extra_trees hist_gradient_boosting svr"
ENV BENTOML_HOME=/opt/winemeup/bentoml BENTOML_DO_NOT_TRACK=True
COPY build/model-store/ /tmp/model-store/
COPY docker/import-models.sh /usr/local/bin/import-models.sh
# import-models.sh opens the 0700 directories `bentoml models import` makes: the pod runs as 10001.
RUN set -eu; archives=""; for model in ${MODELS}; do \
      archives="$archives /tmp/model-store/${model}.bentomodel"; \
    done; \
    import-models.sh /opt/venv/bin/bentoml $archives

# ---- runtime: non-root, read-only friendly (no virtual environment yet) -------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 winemeup \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin winemeup \
    # The router reads the model store under BENTOML_HOME, and BentoML (in router-models)
    # creates these when missing: create them now, because the root filesystem is read-only in
    # the cluster (tmp and prometheus_multiproc_dir get emptyDirs).
    && mkdir -p /opt/winemeup/bentoml/models /opt/winemeup/bentoml/bentos /opt/winemeup/bentoml/envs \
                /opt/winemeup/bentoml/tmp /opt/winemeup/bentoml/prometheus_multiproc_dir \
    # The two BentoML writes at run time belong to the app user. Where the chart mounts emptyDirs
    # over them that changes nothing on a cluster (an emptyDir is world-writable), but podman's
    # tmpfs and kube-play volumes take the owner and mode of the image's directory: root-owned,
    # the runner could not write its Prometheus multiprocess files, BentoML's metrics middleware
    # failed half-way through its start-up (hidden by uvicorn's lifespan "auto"), and every
    # request then answered 500 with DuplicateTimeseries (docs/images.md).
    && chown 10001:10001 /opt/winemeup/bentoml/tmp /opt/winemeup/bentoml/prometheus_multiproc_dir
# For the chart's model-fetch init container. It runs `bentoml models import`, which this
# image has only in the router-models flavour: with the plain router it needs a BentoML binary
# from elsewhere.
COPY docker/import-models.sh /usr/local/bin/import-models.sh
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BENTOML_HOME=/opt/winemeup/bentoml \
    BENTOML_DO_NOT_TRACK=True \
    WINEMEUP_ROUTER_HOST=0.0.0.0 \
    WINEMEUP_ROUTER_PORT=8000

# ---- router ------------------------------------------------------------------------------------
FROM runtime AS router
COPY --from=deps /opt/venv /opt/venv
# Code belongs to root (read-only for the app user); skaffold's dev profile builds with
# APP_OWNER=10001 so that it can sync changed sources into a running container.
ARG APP_OWNER=0
COPY --chown=${APP_OWNER}:${APP_OWNER} winemeup/ /app/winemeup/
COPY --chown=${APP_OWNER}:${APP_OWNER} services/ /app/services/
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "-m", "services.router"]

# ---- router with the model store baked in --------------------------------------------------------
FROM runtime AS router-models
# libgomp1: the OpenMP runtime LightGBM links against (not in the slim image), for the
# framework fallback.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=deps-models /opt/venv /opt/venv
ARG APP_OWNER=0
COPY --chown=${APP_OWNER}:${APP_OWNER} winemeup/ /app/winemeup/
COPY --chown=${APP_OWNER}:${APP_OWNER} services/ /app/services/
COPY --from=models --chown=0:0 /opt/winemeup/bentoml/models/ /opt/winemeup/bentoml/models/
ENV WINEMEUP_ROUTER_MODEL_STORE=/opt/winemeup/bentoml
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["python", "-m", "services.router"]
