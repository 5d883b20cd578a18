#!/usr/bin/env bash
# Deletes the kind cluster `winemeup` (and everything in it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need kind
kind delete cluster --name "$CLUSTER"
