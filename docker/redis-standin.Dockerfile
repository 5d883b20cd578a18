# syntax=docker/dockerfile:1.7
# Stand-ins for the chart's third-party Redis images, for running the chart's workloads as
# containers where no image registry can be reached (tests/containers, `make e2e-containers`).
# They are NOT the images a cluster uses: the chart's defaults stay redis:7.4-alpine and
# oliver006/redis_exporter. These are Debian bookworm's own packages on a Debian base:
#   --target redis           redis-server and redis-cli 7.0 (the chart starts redis-server
#                            itself with `sh -c`, and its probes run `redis-cli ping`)
#   --target redis-exporter  prometheus-redis-exporter 1.45 (the same REDIS_ADDR,
#                            REDIS_PASSWORD and REDIS_EXPORTER_WEB_LISTEN_ADDRESS variables and
#                            /health route the chart relies on)
#
#   docker build -f docker/redis-standin.Dockerfile --target redis -t winemeup-redis-standin:e2e .
#
# BASE_IMAGE: any Debian bookworm image; where no registry answers, the local base that
# scripts/make-base-image.sh makes.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS redis
RUN apt-get update \
    && apt-get install --yes --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* /etc/redis/*
USER 10001:10001
EXPOSE 6379
CMD ["redis-server", "--port", "6379", "--save", "", "--appendonly", "no"]

FROM ${BASE_IMAGE} AS redis-exporter
RUN apt-get update \
    && apt-get install --yes --no-install-recommends prometheus-redis-exporter \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
EXPOSE 9121
ENTRYPOINT ["/usr/bin/prometheus-redis-exporter"]
