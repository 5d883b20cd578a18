# syntax=docker/dockerfile:1.7
# One runner image per model, parameterised by MODEL (build context: the repository root):
#
#   docker build -f docker/runner.Dockerfile --build-arg MODEL=lightgbm \
#       --build-arg RUNNER_LOCK=runner-lightgbm -t winemeup-runner-lightgbm:0.1.0 .
#
# RUNNER_LOCK names the lock in requirements/ the image installs, and nothing else:
#   runner-lightgbm | runner-xgboost | runner-catboost | runner-sklearn
#       the accelerated (ONNX) path plus the model's framework for the fallback, used when the
#       artifact is missing or fails its parity check (xgboost is xgboost-cpu, without NCCL);
#   runner-accelerated
#       the ONNX path only: smaller, but a model whose artifact is missing or fails parity
#       cannot be served by this image.
# Left empty, it is the framework lock of MODEL (the four scikit-learn models share
# runner-sklearn). The lock is picked in a stage of its own and the install stage copies only
# the chosen file, so images with the same lock share the install layer whatever their MODEL.
#
# Why our own Dockerfile and not `bentoml containerize` of the bentos: images with the same lock
# share every layer but the last (the same base image, installed lock and code), so a cluster
# pulls or `kind load`s the four scikit-learn runners' environment once; the user, UID and
# writable paths are ours, which the chart's readOnlyRootFilesystem and emptyDir mounts rely
# on; and the build needs no BentoML-generated Dockerfile or base image.
# The model is the same store entry the bento `winemeup-runner-<model>` packs, exported with
# `bentoml models export` into build/model-store/<model>.bentomodel and imported here: the
# image never starts without its model, and /readyz stays 503 until it is loaded.
#
# The base image is Python 3.11 because the locks are resolved on 3.11 (requirements/compile.sh).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- which lock: a stage of its own, so that MODEL does not enter the install layer's cache key --
FROM ${PYTHON_IMAGE} AS lock
ARG MODEL
ARG RUNNER_LOCK=
COPY requirements/ /tmp/locks/
RUN set -eu; lock="${RUNNER_LOCK}"; \
    if [ -z "$lock" ]; then case "${MODEL}" in \
      lightgbm|xgboost|catboost) lock="runner-${MODEL}" ;; \
      random_forest|extra_trees|hist_gradient_boosting|svr) lock=runner-sklearn ;; \
      *) echo "no runner lock for MODEL=${MODEL}: set RUNNER_LOCK" >&2; exit 2 ;; \
    esac; fi; \
    case "$lock" in runner-*) ;; *) echo "RUNNER_LOCK=$lock is not a runner lock" >&2; exit 2 ;; esac; \
    test -f "/tmp/locks/$lock.lock" || { echo "no requirements/$lock.lock" >&2; exit 2; }; \
    cp "/tmp/locks/$lock.lock" /requirements.lock

# ---- dependencies: that lock into a virtual environment -----------------------------------------
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
COPY --from=lock /requirements.lock /tmp/requirements.lock
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

# ---- model: the exported model imported into a BentoML model store ------------------------------
FROM deps AS model
ARG MODEL
ENV BENTOML_HOME=/opt/winemeup/bentoml BENTOML_DO_NOT_TRACK=True
COPY build/model-store/${MODEL}.bentomodel /tmp/${MODEL}.bentomodel
COPY docker/import-models.sh /usr/local/bin/import-models.sh
# import-models.sh opens the 0700 directory `bentoml models import` makes: the pod runs as 10001.
RUN test -n "${MODEL}" \
    && import-models.sh /opt/venv/bin/bentoml "/tmp/${MODEL}.bentomodel" \
    && /opt/venv/bin/bentoml models get "${MODEL}:latest"

# ---- runner: non-root, read-only friendly --------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runner
# libgomp1: the OpenMP runtime LightGBM links against (not in the slim image; xgboost-cpu,
# scikit-learn, CatBoost and ONNX Runtime bring their own or need none). Installed in every
# runner so that the layers below the model stay shared; it is under 1 MB.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --gid 10001 winemeup \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin winemeup \
    # BentoML creates these under BENTOML_HOME when missing: create them now, because the root
    # filesystem is read-only in the cluster (tmp and prometheus_multiproc_dir get emptyDirs).
    && mkdir -p /opt/winemeup/bentoml/models /opt/winemeup/bentoml/bentos /opt/winemeup/bentoml/envs \
                /opt/winemeup/bentoml/tmp /opt/winemeup/bentoml/prometheus_multiproc_dir \
    # The two BentoML writes at run time belong to the app user. Where the chart mounts emptyDirs
    # over them that changes nothing on a cluster (an emptyDir is world-writable), but podman's
    # tmpfs and kube-play volumes take the owner and mode of the image's directory: root-owned,
    # the runner could not write its Prometheus multiprocess files, BentoML's metrics middleware
    # failed half-way through its start-up (hidden by uvicorn's lifespan "auto"), and every
    # request then answered 500 with DuplicateTimeseries (docs/images.md).
    && chown 10001:10001 /opt/winemeup/bentoml/tmp /opt/winemeup/bentoml/prometheus_multiproc_dir
# For the chart's model-fetch init container (every runner lock has BentoML).
COPY docker/import-models.sh /usr/local/bin/import-models.sh
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Code belongs to root (read-only for the app user); skaffold's dev profile builds with
# APP_OWNER=10001 so that it can sync changed sources into a running container.
ARG APP_OWNER=0
COPY --chown=${APP_OWNER}:${APP_OWNER} winemeup/ /app/winemeup/
COPY --chown=${APP_OWNER}:${APP_OWNER} services/ /app/services/
# The model layer comes last: it is the only one that differs between images with one lock.
ARG MODEL
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
