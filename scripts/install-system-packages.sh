#!/usr/bin/env bash
# Installs the Debian packages the project's tests, stack and benchmark use, where missing:
# redis-server (cache), prometheus (promtool and the local Prometheus), wrk (benchmark),
# chromium (the UI's browser test), unzip (helm and kubectl come in a zip). Needs root and apt-get; otherwise says what is missing.
set -euo pipefail

declare -A binary_of=(
  [redis-server]=redis-server
  [prometheus]=promtool
  [wrk]=wrk
  [chromium]=chromium
  [unzip]=unzip
)
missing=()
for pkg in "${!binary_of[@]}"; do
  command -v "${binary_of[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-packages: missing ${missing[*]}; install them with your package manager" >&2
  echo "(Debian: sudo apt-get install -y ${missing[*]}). Tests that need them will be skipped." >&2
  exit 0
fi
echo "install-system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian prometheus package starts a daemon on :9090 through its init script in some
# set-ups; the project starts its own Prometheus, so stop any that came with the package.
if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
