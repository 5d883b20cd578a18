"""Every container runs as the UID (and GID) the chart sets, with a read-only root
filesystem, and can write only where the chart mounts an emptyDir.

Read from the host, not from inside the container: ``/proc/<pid>/status`` of the container's
main process gives its user, ``/proc/<pid>/mountinfo`` every mount it sees with its options.
Engine-made mounts under /dev, /proc and /sys are the same on a kubelet and are left out; every
other writable mount must be one of the container's emptyDir mounts in the render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.containers.harness import PlayedRelease, Workload, podman

pytestmark = [pytest.mark.containers, pytest.mark.slow]

ENGINE_MOUNTS = ("/dev", "/proc", "/sys")


def _main_pid(container: str) -> int:
    return int(podman("inspect", "--type", "container", "--format", "{{.State.Pid}}", container).strip())


def _ids(pid: int) -> tuple[set[int], set[int]]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {int(x) for x in fields["Uid"].split()}, {int(x) for x in fields["Gid"].split()}


def _mounts(pid: int) -> dict[str, set[str]]:
    """Mount point -> its mount options, as the container's main process sees them."""
    mounts = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = set(fields[5].split(","))
    return mounts


def _expected(w: Workload, container: dict[str, Any]) -> tuple[int, int, set[str]]:
    pod_sc = w.pod_spec.get("securityContext", {})
    sc = container.get("securityContext", {})
    uid = int(sc.get("runAsUser", pod_sc.get("runAsUser", -1)))
    gid = int(sc.get("runAsGroup", pod_sc.get("runAsGroup", -1)))
    empty_dirs = {v["name"] for v in w.pod_spec.get("volumes", []) if "emptyDir" in v}
    writable = {
        m["mountPath"]
        for m in container.get("volumeMounts", [])
        if m["name"] in empty_dirs and not m.get("readOnly")
    }
    return uid, gid, writable


def test_every_container_runs_as_the_charts_uid_read_only_writing_only_to_empty_dirs(
    release: PlayedRelease,
) -> None:
    checked = []
    for w in release.workloads:
        for container in w.containers():
            name = w.container_name(container["name"])
            uid, gid, writable = _expected(w, container)
            assert uid > 0 and gid > 0, f"{name}: the chart sets no non-root runAsUser/runAsGroup"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            pid = _main_pid(name)
            uids, gids = _ids(pid)
            assert uids == {uid}, f"{name} runs as uids {uids}, the chart sets {uid}"
            assert gids == {gid}, f"{name} runs as gids {gids}, the chart sets {gid}"
            mounts = _mounts(pid)
            assert "ro" in mounts["/"], f"{name}: root filesystem mounted {mounts['/']}"
            rw = {
                path
                for path, options in mounts.items()
                if "rw" in options and not path.startswith(ENGINE_MOUNTS)
            }
            assert rw == writable, (
                f"{name}: writable mounts {sorted(rw)}, the chart's emptyDirs {sorted(writable)}"
            )
            checked.append(name)
    names = {n.rsplit("-", 1)[-1] for n in checked}
    assert names >= {"router", "runner", "ui", "redis", "exporter"}, checked
