#!/usr/bin/env bash
# Installs the Debian packages the project uses, where missing:
#   redis-server  the cache (the local stack starts its own when none answers on :6379)
#   prometheus    promtool and the local Prometheus
#   wrk           the benchmark
#   chromium      the UI's browser test
#   unzip         helm and kubectl come in a zip (scripts/install-k8s-tools.sh)
#   and the shellcheck package: actionlint checks the workflows' run: steps with it (tests/ci)
#   podman, runc, catatonit  the images and the chart's workloads as containers (`make images`,
#                 tests/containers: `podman kube play` needs catatonit for its pause image)
#   debootstrap   the local base image where no registry answers (scripts/make-base-image.sh)
# With package names as arguments it installs only those: `make run` asks for
# `redis-server prometheus`. Needs root and apt-get; elsewhere (macOS, other distributions,
# no root) it says what is missing and how to install it, and exits 0: the stack runs without
# Prometheus and with an in-memory cache, and tests that need a missing binary are skipped.
set -euo pipefail

declare -A binary_of=(
  [redis-server]=redis-server
  [prometheus]=promtool
  [wrk]=wrk
  [chromium]=chromium
  [unzip]=unzip
  [shellcheck]=shellcheck
  [podman]=podman
  [runc]=runc
  [catatonit]=catatonit
  [debootstrap]=debootstrap
)
# Homebrew formulae with the same binaries, for the hint on macOS.
declare -A brew_of=([redis-server]=redis [prometheus]=prometheus [wrk]=wrk [chromium]=chromium [unzip]=unzip [shellcheck]=shellcheck
  [podman]=podman [runc]=podman [catatonit]=podman [debootstrap]=debootstrap)

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${!binary_of[@]}")
missing=()
for pkg in "${wanted[@]}"; do
  [ -n "${binary_of[$pkg]:-}" ] || { echo "install-system-packages: unknown package $pkg" >&2; exit 2; }
  command -v "${binary_of[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-packages: missing ${missing[*]}; install them with your package manager" >&2
  if [ "$(uname -s)" = Darwin ]; then
    brew=(); for pkg in "${missing[@]}"; do brew+=("${brew_of[$pkg]}"); done
    echo "(macOS: brew install ${brew[*]}; chromium is a cask: brew install --cask chromium)." >&2
  else
    echo "(Debian: sudo apt-get install -y ${missing[*]})." >&2
  fi
  echo "Until then: the stack runs without what is missing, and tests that need it are skipped." >&2
  exit 0
fi
echo "install-system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian prometheus package starts a daemon on :9090 through its init script in some
# set-ups; the project starts its own Prometheus, so stop any that came with the package.
if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
