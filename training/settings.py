"""Settings of the training job (environment prefix ``WINEMEUP_TRAIN_``).

Command-line flags override these; see ``python -m training train --help``. Fields left
unset (``None``) take the value of the chosen mode: full or ``fast``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

OFFICIAL_ARCHIVE_URL = "https://archive.ics.uci.edu/static/public/186/wine+quality.zip"
"""Where UCI publishes the Wine Quality archive (id 186)."""

SHIPPED_DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "wine-quality"
"""The copy of both CSV files the repository ships (unmodified UCI originals, CC BY 4.0)."""

FULL_TRIALS = 40
FAST_TRIALS = 3
FULL_CV_REPEATS = 3
FAST_CV_REPEATS = 1


class TrainingSettings(BaseSettings):
    """Where the data, the model store and the reports live, and how hard to train."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_TRAIN_", extra="ignore")

    data_dir: Path = Field(
        default=SHIPPED_DATA_DIR,
        description="Folder holding winequality-red.csv and winequality-white.csv; default: the "
        "repository's data/wine-quality (the official archive is downloaded into a folder lacking them).",
    )
    model_store: Path = Field(
        default=Path(".bentoml"),
        description="BentoML home the models are saved into (its models/ folder is the model store).",
    )
    reports_dir: Path = Field(
        default=Path("reports"),
        description="Folder for leaderboard.md, leaderboard.json and leaderboard.png.",
    )
    download_url: str = Field(
        default=OFFICIAL_ARCHIVE_URL,
        description="URL of the UCI Wine Quality zip archive, used when a CSV is absent or on "
        "`download --force`.",
    )
    download_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Timeout of one HTTP read while downloading the archive."
    )
    verify_checksums: bool = Field(
        default=True, description="Check each CSV against its published SHA-256 before training."
    )
    fast: bool = Field(
        default=False, description="Fast mode for tests: few Optuna trials, one CV repeat, fewer trees."
    )
    trials: int | None = Field(
        default=None,
        ge=1,
        description=f"Optuna trials tuning LightGBM; unset means {FULL_TRIALS} (full) "
        f"or {FAST_TRIALS} (fast).",
    )
    cv_folds: int = Field(default=5, ge=2, description="Folds of each cross-validation repeat.")
    cv_repeats: int | None = Field(
        default=None,
        ge=1,
        description=f"Repeats of k-fold cross-validation; unset means {FULL_CV_REPEATS} (full) "
        f"or {FAST_CV_REPEATS} (fast).",
    )
    test_size: float = Field(
        default=0.2,
        gt=0.0,
        lt=0.5,
        description="Share of the data held out as the test split (grouped, stratified).",
    )
    seed: int = Field(default=42, description="Seed of every split, search and model.")
    n_jobs: int = Field(
        default=1,
        ge=1,
        description="Threads each model may use while training (1 is fastest on a shared, busy machine).",
    )

    @property
    def n_trials(self) -> int:
        """Optuna trials for this run (the explicit setting, else the mode's default)."""
        if self.trials is not None:
            return self.trials
        return FAST_TRIALS if self.fast else FULL_TRIALS

    @property
    def n_repeats(self) -> int:
        """Cross-validation repeats for this run (the explicit setting, else the mode's default)."""
        if self.cv_repeats is not None:
            return self.cv_repeats
        return FAST_CV_REPEATS if self.fast else FULL_CV_REPEATS
