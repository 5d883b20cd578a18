"""The kind path a user runs first (`make kind-up kind-deploy e2e`), read as files: pins that
exist and agree, an ingress-nginx upgrade that can finish on one node, image tags that change
with every edit, and skaffold rebuilding a runner only when what it runs changes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_render import REPO_ROOT

from tests.support.binaries import require_binary

pytestmark = pytest.mark.chart

K8S = REPO_ROOT / "k8s"


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (K8S / "versions.env").read_text().splitlines())
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def test_node_image_is_pinned_by_digest_in_one_place() -> None:
    versions = _versions()
    image = versions["KIND_NODE_IMAGE"]
    assert (
        image.startswith("kindest/node:v1.35.")
        and "@sha256:" in image
        and len(image.split("@sha256:")[1]) == 64
    )
    config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert config["nodes"][0]["image"] == image
    assert versions["KIND_MIN_VERSION"] >= "0.31.0"
    assert '--image "$KIND_NODE_IMAGE"' in (K8S / "kind-up.sh").read_text()


def test_ingress_nginx_supports_the_node_version_and_can_upgrade_on_one_node() -> None:
    major, minor, _ = _versions()["INGRESS_NGINX_CHART_VERSION"].split(".")
    assert (int(major), int(minor)) >= (4, 15), (
        "controller v1.15 (chart 4.15) is the line for Kubernetes 1.35"
    )
    values = yaml.safe_load((K8S / "values" / "ingress-nginx-kind.yaml").read_text())
    assert values["controller"]["hostPort"]["enabled"] is True
    rolling = values["controller"]["updateStrategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 1 and rolling["maxSurge"] == 0


def _lib(snippet: str, path: Path) -> subprocess.CompletedProcess[str]:
    """Runs `snippet` after sourcing k8s/lib.sh with PATH limited to `path` (plus bash's own)."""
    bash = shutil.which("bash") or "/bin/bash"
    env = {"PATH": f"{path}:/usr/bin:/bin", "HOME": str(path)}
    return subprocess.run(
        [bash, "-c", f"source {K8S / 'lib.sh'} && {snippet}"], capture_output=True, text=True, env=env
    )


def _fake_tool(bin_dir: Path, name: str, exit_code: int) -> None:
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    tool.chmod(0o755)


def test_engine_prefers_a_docker_daemon_that_answers_else_podman(tmp_path: Path) -> None:
    _fake_tool(tmp_path, "docker", 0)
    _fake_tool(tmp_path, "podman", 0)
    assert _lib("engine", tmp_path).stdout.strip() == "docker"
    _fake_tool(tmp_path, "docker", 1)  # the CLI is there, its daemon does not answer
    assert _lib("engine", tmp_path).stdout.strip() == "podman"


def test_need_engine_says_what_is_missing(tmp_path: Path) -> None:
    # /usr/bin stays on PATH for coreutils: hide whatever engine it holds by forcing an unknown one
    _fake_tool(tmp_path, "docker", 1)
    done = _lib(
        'WINEMEUP_ENGINE= ; command() { [ "$2" = podman ] && return 1; builtin command "$@"; }; need_engine',
        tmp_path,
    )
    assert done.returncode == 1
    assert "daemon does not answer" in done.stderr and "podman is not installed" in done.stderr
    refused = _lib("WINEMEUP_ENGINE=rkt need_engine", tmp_path)
    assert refused.returncode == 1 and "expected docker or podman" in refused.stderr


def test_kind_scripts_stop_when_the_docker_daemon_does_not_answer(tmp_path: Path) -> None:
    _fake_tool(tmp_path, "docker", 1)
    done = _lib("need_docker_daemon; echo went-on", tmp_path)
    assert done.returncode == 1 and "went-on" not in done.stdout
    assert "daemon does not answer" in done.stderr
    # kind needs a docker daemon whatever engine builds the images
    for script in ("kind-up.sh", "kind-deploy.sh"):
        assert "need_docker_daemon" in (K8S / script).read_text(), script
    assert "need_engine" in (K8S / "build-image.sh").read_text()


def _image_tag(repo: Path) -> str:
    return subprocess.run(
        ["bash", "-c", "source k8s/lib.sh && image_tag"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_image_tag_changes_with_every_edit_and_untracked_file(tmp_path: Path) -> None:
    require_binary("git", "apt-get install git")
    repo = tmp_path / "repo"
    (repo / "k8s").mkdir(parents=True)
    (repo / "charts" / "winemeup").mkdir(parents=True)
    for name in ("lib.sh", "versions.env"):
        shutil.copy(K8S / name, repo / "k8s" / name)
    shutil.copy(REPO_ROOT / "charts" / "winemeup" / "Chart.yaml", repo / "charts" / "winemeup" / "Chart.yaml")
    (repo / "app.py").write_text("x = 1\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=repo, check=True)
    clean = _image_tag(repo)
    assert "dirty" not in clean
    (repo / "app.py").write_text("x = 2\n")
    first_edit = _image_tag(repo)
    (repo / "app.py").write_text("x = 3\n")
    second_edit = _image_tag(repo)
    (repo / "new_module.py").write_text("y = 1\n")
    untracked = _image_tag(repo)
    assert len({clean, first_edit, second_edit, untracked}) == 4, (clean, first_edit, second_edit, untracked)
    assert first_edit.startswith(clean + "-dirty-")
    (repo / "build").mkdir()
    (repo / "build" / "model.bentomodel").write_text("artifact")
    assert _image_tag(repo) == untracked, "build/ output must not change the tag"


def test_skaffold_rebuilds_a_runner_only_for_what_it_runs() -> None:
    text = (REPO_ROOT / "skaffold.yaml").read_text()
    assert "v2.19.0" in text.split("apiVersion:")[0]
    config = yaml.safe_load(text)
    runners = [a for a in config["build"]["artifacts"] if a["image"].startswith("winemeup-runner-")]
    assert len(runners) == 7
    for artifact in runners:
        paths = artifact["custom"]["dependencies"]["paths"]
        assert "services/**" not in paths and "services/runner/**" in paths, artifact["image"]
        assert not any(p.startswith("services/router") for p in paths)


def test_export_is_redone_when_the_store_is_newer(tmp_path: Path) -> None:
    """build-image.sh re-exports a model after retraining, not only when the archive is missing."""
    repo, home = tmp_path / "repo", tmp_path / "home"
    (repo / "k8s").mkdir(parents=True)
    for name in ("lib.sh", "versions.env"):
        shutil.copy(K8S / name, repo / "k8s" / name)
    assert "export_is_stale" in (K8S / "build-image.sh").read_text()

    def stale() -> bool:
        check = "source k8s/lib.sh && export_is_stale svr"
        env = {"BENTOML_HOME": str(home), "PATH": "/usr/bin:/bin"}
        return subprocess.run(["bash", "-c", check], cwd=repo, env=env).returncode == 0

    assert stale()  # no archive yet
    version = home / "models" / "svr" / "v1"
    version.mkdir(parents=True)
    (version / "model.yaml").write_text("name: svr\n")
    archive = repo / "build" / "model-store" / "svr.bentomodel"
    archive.parent.mkdir(parents=True)
    archive.write_text("export of v1")
    os.utime(version / "model.yaml", (1_000_000, 1_000_000))
    assert not stale()  # the archive is newer than every saved version
    retrained = home / "models" / "svr" / "v2"
    retrained.mkdir()
    (retrained / "model.yaml").write_text("name: svr\n")
    os.utime(archive, (1_000_000, 1_000_000))
    assert stale()  # a version saved after the export
