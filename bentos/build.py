"""Build the runner bentos: ``winemeup-runner-<model>`` for each model in the model store.

    python bentos/build.py [--home BENTOML_HOME] [--models lightgbm,svr] [--json]

One definition (``bentos/bentofile.yaml``) is specialised per model: the bento bakes in the
model's latest version from the store (pinned as the bento arguments ``model``/``version``), the service
code, and the framework's Python package pinned to the version installed here. The bentos
land in the same BentoML home as the models (``--home``, default ``$BENTOML_HOME``). Prints
the tag of each bento built (a JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from services.runner.core import runner_name  # noqa: E402
from winemeup.runtimes import FRAMEWORK_OF_MODEL, MODEL_NAMES  # noqa: E402

BASE_DEFINITION = Path(__file__).resolve().parent / "bentofile.yaml"

# onnxruntime serves the model's ONNX artifact; pyyaml reads the model store without BentoML.
COMMON_PACKAGES = ("numpy", "pydantic", "pydantic-settings", "onnxruntime", "pyyaml")
FRAMEWORK_PACKAGES = {
    "lightgbm": ("lightgbm",),
    # The full xgboost wheel or the CPU-only one, whichever this environment uses.
    "xgboost": ("xgboost", "xgboost-cpu"),
    "catboost": ("catboost",),
    # shap: TreeSHAP explanations of the scikit-learn trees.
    "sklearn": ("scikit-learn", "shap"),
}


def pinned(*candidates: str) -> list[str]:
    """``name==version`` of the first of ``candidates`` installed here (all of them if several)."""
    found = []
    for name in candidates:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    if not found:
        raise SystemExit(f"none of {candidates} is installed in this environment")
    return found[:1]


def latest_version(home: Path, model: str) -> str:
    """The version the store's ``latest`` pointer names for ``model``."""
    pointer = home / "models" / model / "latest"
    if not pointer.is_file():
        raise SystemExit(f"model {model} is not in the model store {home}/models (train first: make train)")
    return pointer.read_text().strip()


def definition(model: str, version: str) -> dict[str, Any]:
    """The bento definition of one model's runner."""
    spec: dict[str, Any] = yaml.safe_load(BASE_DEFINITION.read_text())
    framework = FRAMEWORK_OF_MODEL[model]
    spec["name"] = runner_name(model)
    spec["labels"] = {**spec.get("labels", {}), "model": model, "framework": framework}
    # Bento arguments, not envs: BentoML sets them before importing the service module
    # (which reads RunnerSettings at import), and WINEMEUP_RUNNER_* still override them.
    spec["args"] = {"model": model, "version": version}
    spec["models"] = [f"{model}:{version}"]
    packages = [p for name in COMMON_PACKAGES for p in pinned(name)]
    packages += pinned(*FRAMEWORK_PACKAGES[framework])
    spec["python"] = {**spec.get("python", {}), "packages": packages}
    return spec


def build(model: str, home: Path, workdir: Path) -> str:
    """``bentoml build`` one runner bento into ``home``; its tag."""
    version = latest_version(home, model)
    bentofile = workdir / f"bentofile-{model}.yaml"
    bentofile.write_text(yaml.safe_dump(definition(model, version), sort_keys=False))
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        # The service module reads its settings at import, which `bentoml build` does.
        "WINEMEUP_RUNNER_MODEL": model,
        "WINEMEUP_RUNNER_VERSION": version,
        # Building imports the service without serving it: no caller exists to need the
        # runner token, which the bento gets where it is served (WINEMEUP_RUNNER_TOKEN).
        "WINEMEUP_RUNNER_ALLOW_UNAUTHENTICATED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", str(bentofile), "--output", "tag", str(REPO_ROOT)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"bentoml build of {model} failed:\n{result.stdout}\n{result.stderr}")
    # `--output tag` prints "__tag__:<name>:<version>" as its last line.
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bentos/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="BentoML home with the model store")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated model names")
    parser.add_argument("--json", action="store_true", help="print {model: bento tag} as JSON")
    args = parser.parse_args(argv)
    home_text = args.home or os.environ.get("BENTOML_HOME")
    if not home_text:
        parser.error("give --home or set BENTOML_HOME")
    home = Path(home_text).resolve()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(MODEL_NAMES)}")
    tags: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="winemeup-bentos-") as tmp:
        for model in models:
            started = time.monotonic()
            tags[model] = build(model, home, Path(tmp))
            if not args.json:
                print(f"built {tags[model]}  ({time.monotonic() - started:.1f} s)", flush=True)
    if args.json:
        print(json.dumps(tags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
