#!/usr/bin/env bash
# Makes a local stand-in for python:3.11-slim-bookworm where no image registry can be reached
# (an air-gapped site, a CI runner behind a proxy): Debian bookworm from debootstrap
# --variant=minbase, plus python3 and python3-venv (Python 3.11, the locks' version), a
# `python` symlink as the official image has, ca-certificates, netbase and tzdata, imported into
# the container engine as $WINEMEUP_BASE_IMAGE (default localhost/winemeup-python:3.11-bookworm).
#
#   scripts/make-base-image.sh            make it unless the engine already has it
#   scripts/make-base-image.sh --force    make it again
#
# The Debian mirror is the one apt uses on this machine (/etc/apt/sources.list(.d)), else
# $DEBIAN_MIRROR, else http://deb.debian.org/debian. Needs root, debootstrap and docker or
# podman. Build against it with --build-arg PYTHON_IMAGE=localhost/winemeup-python:3.11-bookworm
# (`make images` does that by itself when python:3.11-slim-bookworm cannot be pulled).
# Differences from the official image: Debian's Python 3.11.2 in /usr/bin instead of a
# python.org 3.11 build in /usr/local/bin; pip exists only inside venvs (python3-pip is left
# out, as the images install everything into /opt/venv).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../k8s/lib.sh"
image="${WINEMEUP_BASE_IMAGE:-localhost/winemeup-python:3.11-bookworm}"
force=false
[ "${1:-}" = --force ] && force=true

need_engine
if [ "$force" = false ] && run_engine image exists "$image" 2>/dev/null; then
  log "$image exists (--force makes it again)"; exit 0
fi
if [ "$ENGINE" = docker ] && [ "$force" = false ] && docker image inspect "$image" >/dev/null 2>&1; then
  log "$image exists (--force makes it again)"; exit 0
fi
[ "$(id -u)" = 0 ] || { log "debootstrap needs root (run as root, or pull python:3.11-slim-bookworm)"; exit 1; }
need debootstrap

mirror_from_apt() {
  # deb822 (URIs: ... with Suites: bookworm) or one-line (deb URI bookworm main) sources.
  local f files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk '
        /^URIs:/ {uri = $2}
        /^Suites:/ && uri != "" { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }
        /^Types:/ {uri = ""}
        /^deb / { u = $2; s = $3; if ($2 ~ /^\[/) { u = $3; s = $4 } if (s == "bookworm") { print u; exit } }' "${files[@]}"
}
mirror="${DEBIAN_MIRROR:-$(mirror_from_apt)}"
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
started=$(date +%s)
log "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,netbase,tzdata \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; log "debootstrap failed"; exit 1
}
rm -f "$rootfs.log"
ln -sf python3 "$rootfs/usr/bin/python"
# apt settings of Debian's official container images (debuerreotype): no package caches or
# translations left behind by an apt-get in a Dockerfile (without them, installing libgomp1
# in the runner image left 80 MB of /var/cache/apt/*.bin in its layer).
cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
# As the official slim image: no apt lists, caches or docs left in the layer.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
chroot "$rootfs" python -c 'import sys, ensurepip, venv; assert sys.version_info[:2] == (3, 11), sys.version'
tar -C "$rootfs" -c . | run_engine import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$image" >/dev/null
log "made $image in $(( $(date +%s) - started )) s: $(chroot "$rootfs" python --version)"
