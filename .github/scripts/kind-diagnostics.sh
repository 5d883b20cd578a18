#!/usr/bin/env bash
# Collects what explains a failed kind job into OUTDIR (uploaded as an artifact): events,
# every resource, `kubectl describe` of pods, HPAs and nodes, Helm releases, and the logs
# (current and previous container) of every pod in the given namespaces.
#   .github/scripts/kind-diagnostics.sh OUTDIR NAMESPACE...
# Never fails: whatever it cannot read it notes in the file and goes on.
set -uo pipefail
out="${1:?outdir}"
shift
mkdir -p "$out/logs"
kubectl get events -A --sort-by=.lastTimestamp >"$out/events.txt" 2>&1
kubectl get all,hpa,ingress,pdb,networkpolicy,servicemonitor -A -o wide >"$out/resources.txt" 2>&1
kubectl describe nodes >"$out/describe-nodes.txt" 2>&1
kubectl top pods -A >"$out/top-pods.txt" 2>&1
helm list -A >"$out/helm-releases.txt" 2>&1
for ns in "$@"; do
  kubectl -n "$ns" describe pods >"$out/describe-pods-$ns.txt" 2>&1
  kubectl -n "$ns" describe hpa >"$out/describe-hpa-$ns.txt" 2>&1
  for pod in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
    name="${pod#pod/}"
    kubectl -n "$ns" logs "$pod" --all-containers --prefix --tail=5000 >"$out/logs/$ns-$name.txt" 2>&1
    kubectl -n "$ns" logs "$pod" --all-containers --prefix --previous --tail=5000 \
      >"$out/logs/$ns-$name.previous.txt" 2>&1 || rm -f "$out/logs/$ns-$name.previous.txt"
  done
done
echo "diagnostics in $out"
exit 0
