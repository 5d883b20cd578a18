"""Command line: ``python -m training train [MODEL ...]`` and ``python -m training download``.

Flags override the settings (environment prefix ``WINEMEUP_TRAIN_``). Data problems end
with exit code 2 and a one-line message on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from training.data import DataError, ensure_data, load_wine_data
from training.settings import FAST_CV_REPEATS, FAST_TRIALS, FULL_CV_REPEATS, FULL_TRIALS, TrainingSettings
from winemeup.runtimes import MODEL_NAMES

logger = logging.getLogger(__name__)

EXIT_DATA_ERROR = 2
EXIT_FAILURE = 1


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    """The argument parser of both sub-commands."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train the WineMeUp models on the UCI Wine Quality data, or fetch that data. "
        "Every flag overrides its setting (environment variable WINEMEUP_TRAIN_<NAME>).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train models into the model store and write the leaderboard reports",
        description="Train models (all seven when none is named) into a BentoML model store, "
        "evaluate them (grouped held-out test + repeated CV, and the paper-style protocol) and "
        "write leaderboard.md/.json/.png. Known models: " + ", ".join(MODEL_NAMES) + ".",
    )
    train.add_argument(
        "models", nargs="*", metavar="MODEL", help="model families to train (default: all seven)"
    )
    train.add_argument(
        "--trials",
        type=int,
        default=None,
        help=f"Optuna trials tuning LightGBM (default {FULL_TRIALS}; {FAST_TRIALS} with --fast)",
    )
    train.add_argument(
        "--cv-repeats",
        type=int,
        default=None,
        help=f"repeats of k-fold cross-validation (default {FULL_CV_REPEATS}; {FAST_CV_REPEATS} with --fast)",
    )
    _add_data_dir(train)
    train.add_argument(
        "--model-store",
        type=Path,
        default=None,
        help="BentoML home to save the models into; models land in its models/ folder ("
        + _default("model_store")
        + ")",
    )
    train.add_argument(
        "--reports-dir",
        type=Path,
        default=None,
        help="folder for leaderboard.md, leaderboard.json and leaderboard.png ("
        + _default("reports_dir")
        + ")",
    )
    train.add_argument(
        "--fast",
        action="store_true",
        default=None,
        help="fast mode for tests and CI: few trials, one CV repeat, fewer trees (about 30 CPU seconds)",
    )
    train.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of every split, search and model (" + _default("seed") + ")",
    )
    train.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars (logs still go to stderr)"
    )
    train.add_argument(
        "--candidate",
        action="store_true",
        help="save each model as a candidate version for a rollout: labelled 'rollout: candidate', "
        "while the store's 'latest' keeps naming the stable version (train it with another --seed, "
        "or other data with --data-dir --no-verify)",
    )

    accelerate = sub.add_parser(
        "accelerate",
        help="(re)build the ONNX artifacts of models already in the store, with their parity check",
        description="Convert the latest version of each named model (all seven when none is named) "
        "in the model store to ONNX, store the artifact beside it and check parity on the whole "
        "data set. `train` does this for every model it saves; this is for older stores.",
    )
    accelerate.add_argument("models", nargs="*", metavar="MODEL", help="models (default: all seven)")
    _add_data_dir(accelerate)
    accelerate.add_argument(
        "--model-store", type=Path, default=None, help="BentoML home (" + _default("model_store") + ")"
    )

    download = sub.add_parser(
        "download",
        help="download and verify the data only",
        description="Make sure winequality-red.csv and winequality-white.csv are in the data folder: "
        "download the official UCI archive when absent (or with --force), and check each file's SHA-256.",
    )
    _add_data_dir(download)
    download.add_argument(
        "--force",
        action="store_true",
        help="download the archive again and replace the files (e.g. the shipped data/wine-quality copies)",
    )
    return parser


def _default(field: str) -> str:
    """Where a flag's value comes from when it is not given: its env variable, else the default."""
    default = TrainingSettings.model_fields[field].default
    return f"default: ${TrainingSettings.model_config.get('env_prefix', '')}{field.upper()}, else {default}"


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with winequality-red.csv and winequality-white.csv (shipped in data/wine-quality); "
        "the official archive is downloaded there when they are absent (" + _default("data_dir") + ")",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        default=None,
        help="skip the SHA-256 check of the CSV files (for modified copies of the data)",
    )


def settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    """Settings from the environment, overridden by every flag that was given."""
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("data_dir", "data_dir"),
        ("model_store", "model_store"),
        ("reports_dir", "reports_dir"),
        ("trials", "trials"),
        ("cv_repeats", "cv_repeats"),
        ("fast", "fast"),
        ("seed", "seed"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "no_verify", None):
        overrides["verify_checksums"] = False
    base = TrainingSettings()
    # Validate the merged values (model_copy alone would not).
    return TrainingSettings.model_validate({**base.model_dump(), **overrides})


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m training`` and ``winemeup-train``; returns the exit code."""
    called_as = Path(sys.argv[0]).name
    parser = build_parser(called_as if called_as == "winemeup-train" else "python -m training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_args(args)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        print(f"error: invalid setting: {problems}", file=sys.stderr)
        return EXIT_DATA_ERROR
    try:
        if args.command == "download":
            digests = ensure_data(
                settings.data_dir,
                settings.download_url,
                timeout=settings.download_timeout_seconds,
                verify=settings.verify_checksums,
                force=args.force,
            )
            for name, digest in digests.items():
                print(f"{settings.data_dir / name}  sha256 {digest}  ok")
            return 0
        if args.command == "accelerate":
            return _accelerate(settings, args.models or list(MODEL_NAMES))
        unknown = [m for m in args.models if m not in MODEL_NAMES]
        if unknown:
            print(
                f"error: unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}",
                file=sys.stderr,
            )
            return EXIT_DATA_ERROR
        return _train(settings, args.models, progress=not args.no_progress, candidate=args.candidate)
    except DataError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_DATA_ERROR


def _accelerate(settings: TrainingSettings, models: list[str]) -> int:
    from training.store import use_model_store

    data = load_wine_data(
        settings.data_dir,
        settings.download_url,
        timeout=settings.download_timeout_seconds,
        verify=settings.verify_checksums,
    )
    home = use_model_store(settings.model_store)
    from training.accelerate import accelerate_store

    reports = accelerate_store(home, models, data.X)
    print(f"{'model':<24}{'parity':>8}{'largest diff':>14}{'grades flipped':>16}")
    for name, report in reports.items():
        verdict = "pass" if report.passed else "FAIL"
        print(f"{name:<24}{verdict:>8}{report.max_abs_diff:>14.2e}{report.grade_flips:>16}")
    return 0 if all(r.passed for r in reports.values()) else EXIT_FAILURE


def _train(
    settings: TrainingSettings, models: Sequence[str], *, progress: bool, candidate: bool = False
) -> int:
    # BENTOML_HOME must be set (use_model_store) before anything imports bentoml.
    from training.store import (
        CANDIDATE_LABEL,
        ModelStoreError,
        keep_stable_latest,
        latest_version,
        save_model,
        use_model_store,
        verify_round_trip,
    )

    started = time.perf_counter()
    # Data first: a data error must not leave an empty model store behind.
    data = load_wine_data(
        settings.data_dir,
        settings.download_url,
        timeout=settings.download_timeout_seconds,
        verify=settings.verify_checksums,
    )
    try:
        home = use_model_store(settings.model_store)
    except ModelStoreError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE

    from tqdm.contrib.logging import logging_redirect_tqdm

    from training.accelerate import export_accelerated
    from training.insight import write_model_insight
    from training.models import framework_of
    from training.pipeline import model_labels, model_metadata, run_training
    from training.reports import write_reports
    from winemeup.runtimes.store import read_entry

    with logging_redirect_tqdm():  # log lines print above the progress bars, not through them
        run = run_training(data, settings, models, progress=progress)
    paths = write_reports(run, settings.reports_dir)
    labels = model_labels(run)
    test_rows = data.X[run.test_index]
    saved: list[str] = []
    try:
        for result in run.results:
            if not result.saved:
                continue
            stable = latest_version(home, result.name) if candidate else None
            tag = save_model(
                result.name,
                result.estimator,
                labels={**labels, CANDIDATE_LABEL: "candidate"} if candidate else labels,
                metadata=model_metadata(result, run),
            )
            if candidate:
                keep_stable_latest(home, result.name, stable)
            verify_round_trip(tag, test_rows, result.test_predictions)
            export_accelerated(
                read_entry(home, *tag.split(":", 1)), framework_of(result.name), result.estimator, data.X
            )
            write_model_insight(
                read_entry(home, *tag.split(":", 1)).path, result.intervals, run.drift_reference
            )
            saved.append(tag)
    except ModelStoreError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILURE

    print(f"model store: {home / 'models'}")
    print(f"{'model':<24}{'tag':<46}{'cv rmse':>9}{'test rmse':>11}{'test mae':>10}{'seconds':>9}")
    tags = {t.partition(":")[0]: t for t in saved}
    for r in run.results:
        print(
            f"{r.name:<24}{tags.get(r.name, '(reference, not saved)'):<46}"
            f"{r.cv.metrics['overall']['rmse']:>9.4f}{r.test['overall']['rmse']:>11.4f}"
            f"{r.test['overall']['mae']:>10.4f}{r.total_seconds:>9.1f}"
        )
    if run.ensembles is not None and run.ensembles.declare is not None:
        print(f"ensembles: {run.ensembles.goal['statement']}")
        print(f"ensemble to declare: {json.dumps(run.ensembles.declare)}")
    if candidate:
        print("candidate versions (the store's 'latest' still names the stable ones):")
        for t in saved:
            name, _, version = t.partition(":")
            print(f"  {name}: candidate {version}, stable {latest_version(home, name)}")
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    print(f"done in {time.perf_counter() - started:.1f} s ({run.mode} mode)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
