"""Leaderboard reports of a training run: ``leaderboard.json``, ``leaderboard.md``, ``leaderboard.png``.

The JSON is the source: the Markdown and the chart are rendered from it, so all three agree.
Both protocols are shown, clearly labelled, beside the published SVM figures of
Cortez et al. (2009), Table 3.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from training.evaluation import PAPER_SVM, PROTOCOLS
from training.models import UNTUNED_LIGHTGBM
from training.pipeline import TrainingRun, plain_json

logger = logging.getLogger(__name__)

PAPER_SOURCE = (
    "Cortez et al. (2009), Decision Support Systems 47(4), Table 3, SVM "
    "(one model per wine type, 20 runs of 5-fold CV, no de-duplication)"
)
REPORT_FILES = ("leaderboard.json", "leaderboard.md", "leaderboard.png")
ENSEMBLE_RULE = (
    "weighted mean of saved families' scores; weights non-negative, summing to one, fitted on "
    "grouped-CV out-of-fold predictions by least squares (nnls) or least absolute deviations (lad, "
    "the MAD itself); candidates: all saved families, and the three best by grouped-CV MAD; CV "
    "figures nested (each fold scored with weights fitted on the other folds only); declared weights "
    "fitted on the whole training split's out-of-fold predictions, weights under 0.01 dropped; "
    "held-out test scored with the saved members"
)


def leaderboard(run: TrainingRun) -> dict[str, Any]:
    """The leaderboard as plain JSON types; models ordered by grouped CV RMSE (best first)."""
    ranked = sorted(run.results, key=lambda r: r.cv.metrics["overall"]["rmse"])
    models = []
    for r in ranked:
        entry: dict[str, Any] = {
            "name": r.name,
            "framework": r.framework,
            "saved": r.saved,
            "seconds": {
                "total": round(r.total_seconds, 2),
                "cpu": round(r.cpu_seconds, 2),
                "final_fit": round(r.fit_seconds, 3),
            },
            "params": plain_json(r.params),
            "metrics": r.metrics(),
        }
        if r.tuning is not None:
            entry["tuning"] = plain_json(r.tuning.as_dict())
        if r.intervals is not None:
            entry["intervals"] = _interval_summary(r.intervals)
        models.append(entry)
    saved = [m for m in models if m["saved"]]
    best = saved[0]["name"] if saved else None
    return plain_json(
        {
            "generated_at": run.started_at,
            "mode": run.mode,
            "seed": run.seed,
            "folds": run.folds,
            "repeats": run.repeats,
            "test_size": run.test_size,
            "lightgbm_trials": run.trials,
            "threads_per_model": run.threads,
            "seconds": round(run.seconds, 1),
            "cpu_seconds": round(run.cpu_seconds, 1),
            "data": run.data.as_dict(),
            "protocols": {
                "grouped": run.protocol_notes()["grouped"],
                "paper": run.protocol_notes()["paper"],
            },
            "paper": {"source": PAPER_SOURCE, **PAPER_SVM},
            "best_model": best,
            "best_model_rule": "lowest overall RMSE in grouped CV on the training split (saved models only)",
            "models": models,
            "checks": _checks(models, best),
            "ensembles": _ensembles(run),
            "declare_ensemble": run.ensembles.declare if run.ensembles is not None else None,
            "insight_seconds": round(run.insight_seconds, 2),
        }
    )


def _interval_summary(document: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard shows of a model's interval calibration: method chosen per type,
    the held-out test's coverage and width, and the training-split check behind the choice."""
    return {
        "method": document["method"],
        "levels": document["levels"],
        "selected": {t: v["selected"] for t, v in document["by_type"].items()},
        "held_out_test": document.get("held_out_test", {}),
        "training_check": {t: v["training_check"] for t, v in document["by_type"].items()},
    }


def _ensembles(run: TrainingRun) -> dict[str, Any] | None:
    """The blends beside the single models: figures, members and weights, and the goal check."""
    report = run.ensembles
    if report is None:
        return None
    blends = []
    for b in report.blends:
        entry: dict[str, Any] = {
            "name": b.name,
            "fit": b.fit,
            "candidates": b.candidates,
            "members": b.members,
            "metrics": {"cv": b.cv, "test": b.test},
            "member_down_cv_mae": b.member_down_cv_mae,
        }
        if report.best is b and run.ensemble_intervals is not None:
            entry["intervals"] = _interval_summary(run.ensemble_intervals)
            # The whole calibration (an intervals.json document) of the blend to declare:
            # winemeup.insight.Intervals.from_dict reads it, as it reads a model's.
            entry["calibration"] = {k: v for k, v in run.ensemble_intervals.items() if k != "held_out_test"}
        blends.append(entry)
    return {
        "rule": ENSEMBLE_RULE,
        "blends": blends,
        "best": report.best.name if report.best is not None else None,
        "best_single": {scope: {"name": n, "cv_mae": mae} for scope, (n, mae) in report.best_single.items()},
        "goal": report.goal,
    }


def _checks(models: list[dict[str, Any]], best: str | None) -> dict[str, Any]:
    """Did the best model beat the paper's SVM; is tuned LightGBM no worse than untuned?"""
    by_name = {m["name"]: m for m in models}
    out: dict[str, Any] = {}
    if best is not None:
        beats: dict[str, Any] = {}
        for key, label in (("paper_cv", "paper"), ("test", "grouped_test")):
            section: dict[str, Any] = {}
            for wine_type, ref in PAPER_SVM.items():
                figures = by_name[best]["metrics"][key][wine_type]
                section[wine_type] = {
                    "mae": figures["mae"] < ref["mae"],
                    "acc_0_5": figures["acc_0_5"] > ref["acc_0_5"],
                }
            beats[label] = section
        out["best_beats_paper_svm"] = beats
    if "lightgbm" in by_name and UNTUNED_LIGHTGBM in by_name:
        tuned, untuned = by_name["lightgbm"]["metrics"], by_name[UNTUNED_LIGHTGBM]["metrics"]
        out["tuned_lightgbm_not_worse"] = {
            key: tuned[key]["overall"]["rmse"] <= untuned[key]["overall"]["rmse"]
            for key in ("cv", "test", "paper_cv")
        }
    return out


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value * 100:.1f}%" if pct else f"{value:.3f}"


def _pm(entry: dict[str, Any], metric: str, pct: bool = False) -> str:
    std = entry.get(f"{metric}_std")
    if not std:
        return _fmt(entry[metric], pct)
    return f"{_fmt(entry[metric], pct)} ± {_fmt(std, pct)}"


def render_markdown(board: dict[str, Any]) -> str:
    """Human-readable leaderboard."""
    sections = (
        _md_intro,
        _md_test_table,
        _md_cv_table,
        _md_paper_table,
        _md_test_per_type,
        _md_targets,
        _md_ensembles,
        _md_intervals,
        _md_times,
        _md_tuning,
    )
    return "\n".join(line for section in sections for line in section(board)) + "\n"


def _md_intro(board: dict[str, Any]) -> list[str]:
    """Title, run, data, protocols and the best model."""
    data = board["data"]
    lines = [
        "# WineMeUp leaderboard",
        "",
        f"Run of {board['generated_at']} in **{board['mode']}** mode: seed {board['seed']}, "
        f"{board['folds']}-fold CV x {board['repeats']} repeat(s), held-out test {board['test_size']:.0%}, "
        f"{board['lightgbm_trials']} Optuna trials for LightGBM; {board['seconds']:.0f} s in all "
        f"({board['cpu_seconds']:.0f} CPU s, {board['threads_per_model']} thread(s) per model).",
        "",
        f"Data: UCI Wine Quality, red {data['rows']['red']} rows ({data['unique_rows']['red']} unique), "
        f"white {data['rows']['white']} rows ({data['unique_rows']['white']} unique); "
        f"training split {data['train_rows']} rows, test split {data['test_rows']} rows; "
        f"dataset sha256 `{data['dataset_sha256'][:12]}`.",
        "",
        "Every model is ONE combined model over red and white wines (wine_type is a feature). "
        "MAE is the paper's MAD; acc@T is the share of predictions within T of the true grade "
        "(acc@0.5: the prediction rounds to the true grade). "
        f"`{UNTUNED_LIGHTGBM}` is a reference row (LightGBM defaults), not a served model.",
        "",
        "## Protocols",
        "",
        f"- **Grouped (honest)**: {board['protocols']['grouped']}",
        f"- **Paper-style**: {board['protocols']['paper']}",
        "",
        f"Best model (by {board['best_model_rule']}): **{board['best_model']}**.",
        "",
        "## Grouped protocol: held-out test split (what the saved models score)",
        "",
    ]
    return lines


def _md_test_table(board: dict[str, Any]) -> list[str]:
    """The saved models on the held-out test split."""
    lines: list[str] = []
    header = (
        "| model | RMSE | MAE | R² | acc@0.5 | acc@1.0 | red MAE | red acc@0.5 | white MAE | white acc@0.5 |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    lines += [header, rule]
    for m in board["models"]:
        t = m["metrics"]["test"]
        lines.append(
            f"| {m['name']} | {_fmt(t['overall']['rmse'])} | {_fmt(t['overall']['mae'])} | "
            f"{_fmt(t['overall']['r2'])} | {_fmt(t['overall']['acc_0_5'], True)} | "
            f"{_fmt(t['overall']['acc_1_0'], True)} | {_fmt(t['red']['mae'])} | "
            f"{_fmt(t['red']['acc_0_5'], True)} | {_fmt(t['white']['mae'])} | "
            f"{_fmt(t['white']['acc_0_5'], True)} |"
        )
    return lines


def _md_cv_table(board: dict[str, Any]) -> list[str]:
    """Grouped repeated CV on the training split."""
    lines: list[str] = []
    lines += [
        "",
        "## Grouped protocol: repeated CV on the training split (mean ± std over repeats)",
        "",
        "| model | RMSE | MAE | R² | acc@0.5 | acc@1.0 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in board["models"]:
        c = m["metrics"]["cv"]["overall"]
        lines.append(
            f"| {m['name']} | {_pm(c, 'rmse')} | {_pm(c, 'mae')} | {_pm(c, 'r2')} | "
            f"{_pm(c, 'acc_0_5', True)} | {_pm(c, 'acc_1_0', True)} |"
        )
    return lines


def _md_paper_table(board: dict[str, Any]) -> list[str]:
    """Paper-style CV per wine type, beside the paper's SVM."""
    lines: list[str] = []
    lines += [
        "",
        "## Paper-style protocol, per wine type, beside the paper",
        "",
        "Plain repeated k-fold over all rows (duplicates not grouped), like the paper. "
        "The paper row is copied from its Table 3 (SVM, one model per wine type). "
        "The tuned LightGBM's parameters were chosen on the training split, which these folds "
        "overlap, so its figures here are slightly optimistic.",
        "",
        "| model | red MAD | red acc@0.5 | red acc@1.0 | white MAD | white acc@0.5 | white acc@1.0 "
        "| overall RMSE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    paper = board["paper"]
    lines.append(
        f"| *Cortez et al. 2009, SVM* | {_fmt(paper['red']['mae'])} | "
        f"{_fmt(paper['red']['acc_0_5'], True)} | "
        f"{_fmt(paper['red']['acc_1_0'], True)} | {_fmt(paper['white']['mae'])} | "
        f"{_fmt(paper['white']['acc_0_5'], True)} | {_fmt(paper['white']['acc_1_0'], True)} | n/a |"
    )
    for m in board["models"]:
        p = m["metrics"]["paper_cv"]
        lines.append(
            f"| {m['name']} | {_fmt(p['red']['mae'])} | {_fmt(p['red']['acc_0_5'], True)} | "
            f"{_fmt(p['red']['acc_1_0'], True)} | {_fmt(p['white']['mae'])} | "
            f"{_fmt(p['white']['acc_0_5'], True)} | {_fmt(p['white']['acc_1_0'], True)} | "
            f"{_fmt(p['overall']['rmse'])} |"
        )
    return lines


def _md_test_per_type(board: dict[str, Any]) -> list[str]:
    """Held-out test per wine type."""
    lines: list[str] = []
    lines += ["", "## Grouped protocol, held-out test, per wine type", ""]
    lines += [
        "| model | red MAD | red acc@0.5 | red acc@1.0 | white MAD | white acc@0.5 | white acc@1.0 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in board["models"]:
        t = m["metrics"]["test"]
        lines.append(
            f"| {m['name']} | {_fmt(t['red']['mae'])} | {_fmt(t['red']['acc_0_5'], True)} | "
            f"{_fmt(t['red']['acc_1_0'], True)} | {_fmt(t['white']['mae'])} | "
            f"{_fmt(t['white']['acc_0_5'], True)} | {_fmt(t['white']['acc_1_0'], True)} |"
        )
    return lines


def _md_targets(board: dict[str, Any]) -> list[str]:
    """Whether the best model beats the paper and tuning did not hurt."""
    lines: list[str] = []
    lines += ["", "## Targets", ""]
    checks = board["checks"]
    beats = checks.get("best_beats_paper_svm")
    if beats:
        for label, title in (("paper", "paper-style protocol"), ("grouped_test", "grouped held-out test")):
            parts = []
            for wine_type, res in beats[label].items():
                parts.append(
                    f"{wine_type}: MAD {'beats' if res['mae'] else 'does NOT beat'} the paper, "
                    f"acc@0.5 {'beats' if res['acc_0_5'] else 'does NOT beat'} the paper"
                )
            lines.append(f"- Best model ({board['best_model']}), {title}: " + "; ".join(parts) + ".")
    tuned = checks.get("tuned_lightgbm_not_worse")
    if tuned:
        names = {"cv": "grouped CV", "test": "held-out test", "paper_cv": "paper-style CV"}
        lines.append(
            "- Tuned LightGBM vs untuned (overall RMSE): "
            + "; ".join(f"{names[k]}: {'not worse' if ok else 'WORSE'}" for k, ok in tuned.items())
            + "."
        )
    return lines


def _weights(members: dict[str, float]) -> str:
    return ", ".join(
        f"{name} {weight:.3f}" for name, weight in sorted(members.items(), key=lambda kv: -kv[1])
    )


def _md_ensembles(board: dict[str, Any]) -> list[str]:
    """Blends beside the best single family, per wine type, and the ensemble to declare."""
    ens = board.get("ensembles")
    if not ens:
        return ["", "## Ensembles", "", "No blend: fewer than two saved families were trained."]
    lines = [
        "",
        "## Ensembles (grouped protocol)",
        "",
        f"Blend: {ens['rule']}.",
        "",
        "| model | members and weights | CV MAD red | CV MAD white | CV RMSE | test MAD red | test MAD white "
        "| test RMSE |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [(b["name"], _weights(b["members"]), b["metrics"]) for b in ens["blends"]]
    by_name = {m["name"]: m for m in board["models"]}
    singles = []
    for scope in ("red", "white"):
        name = ens["best_single"][scope]["name"]
        if name not in singles:
            singles.append(name)
    best_for = {
        n: "/".join(t for t in ("red", "white") if ens["best_single"][t]["name"] == n) for n in singles
    }
    rows += [
        (
            f"{n} (best single, {best_for[n]})",
            "",
            by_name[n]["metrics"],
        )
        for n in singles
    ]
    for name, members, m in rows:
        cv, test = m["cv"], m["test"]
        lines.append(
            f"| {name} | {members} | {_fmt(cv['red']['mae'])} | {_fmt(cv['white']['mae'])} | "
            f"{_fmt(cv['overall']['rmse'])} | {_fmt(test['red']['mae'])} | {_fmt(test['white']['mae'])} | "
            f"{_fmt(test['overall']['rmse'])} |"
        )
    goal = ens["goal"]
    lines += ["", f"**{goal['statement']}**"]
    for wine_type, g in goal.get("by_type", {}).items():
        lines.append(
            f"- {wine_type}: best blend {g['blend_cv_mae']:.4f} vs {g['best_single']} "
            f"{g['best_single_cv_mae']:.4f} (gain {g['gain']:+.4f}, goal {goal['target_gain']})."
        )
    declare = board.get("declare_ensemble")
    if declare:
        best = next(b for b in ens["blends"] if b["name"] == ens["best"])
        down = ", ".join(f"{k} down {v:.3f}" for k, v in best["member_down_cv_mae"].items())
        lines += [
            "",
            "Ensemble to declare (the router's shape; `on_member_down` is `renormalize` when the blend "
            "without any one member stays within 0.005 of the best single family's grouped-CV MAD):",
            "",
            "```json",
            json.dumps(declare),
            "```",
            "",
            f"Grouped-CV MAD overall with one member down (others renormalised): {down or 'n/a'}.",
        ]
    return lines


def _md_intervals(board: dict[str, Any]) -> list[str]:
    """Conformal intervals: coverage and mean width on the held-out test, both methods."""
    entries = [(m["name"], m["intervals"]) for m in board["models"] if m.get("intervals")]
    ens = board.get("ensembles") or {}
    entries += [(b["name"], b["intervals"]) for b in ens.get("blends", []) if b.get("intervals")]
    if not entries:
        return []
    method = entries[0][1]["method"]
    first = entries[0][1]["held_out_test"]
    noise = ", ".join(
        f"{t} ±{100 * math.sqrt(lv * (1 - lv) / max(1, first[t]['rows'])):.1f} points at {lv:.0%}"
        for t in ("red", "white")
        for lv in (0.8, 0.9)
    )
    lines = [
        "",
        "## Prediction intervals (split-conformal, grouped held-out test)",
        "",
        f"Method: {method}. Coverage is the share of held-out wines whose grade lies in the interval "
        "(goal: within ±2 points of the nominal level); width is the mean interval width in grade points. "
        "The method served per type is the one the training-split check chose (the test takes no part "
        f"in it). One standard deviation of sampling noise on this test split: {noise}.",
        "",
        "| model | type | served | 80 % abs. cov / width | 80 % norm. cov / width | 90 % abs. cov / width "
        "| 90 % norm. cov / width |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name, iv in entries:
        for wine_type, figures in iv["held_out_test"].items():
            cells = []
            for level in ("0.8", "0.9"):
                for method_name in ("absolute", "normalised"):
                    f = figures[method_name].get(level)
                    cells.append(
                        "n/a" if f is None else f"{_fmt(f['coverage'], True)} / {f['mean_width']:.2f}"
                    )
            lines.append(f"| {name} | {wine_type} | {figures['selected']} | " + " | ".join(cells) + " |")
    return lines + _md_interval_summary(entries)


def _md_interval_summary(entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The training-split check beside the held-out test: ranges over models, per type and level."""
    lines = [
        "",
        "Served intervals, range over the models above: held-out test coverage vs the training-split "
        "check (calibrated on four folds' out-of-fold residuals, measured on the fifth; ± is the "
        "fold-to-fold standard deviation of the coverage, i.e. what one split may show by chance).",
        "",
    ]
    for wine_type in ("red", "white"):
        parts = []
        for level in ("0.8", "0.9"):
            test = [iv["held_out_test"][wine_type][iv["selected"][wine_type]][level] for _, iv in entries]
            check = [iv["training_check"][wine_type][iv["selected"][wine_type]][level] for _, iv in entries]
            within = sum(abs(t["coverage"] - float(level)) <= 0.02 + 1e-9 for t in test)
            fold_std = max(c.get("coverage_fold_std", 0.0) for c in check)
            parts.append(
                f"{float(level):.0%}: test {_span([t['coverage'] for t in test])} "
                f"({within}/{len(test)} within ±2 points), check {_span([c['coverage'] for c in check])} "
                f"(± up to {fold_std * 100:.1f}), width {min(t['mean_width'] for t in test):.2f}-"
                f"{max(t['mean_width'] for t in test):.2f}"
            )
        lines.append(f"- {wine_type}: " + "; ".join(parts) + ".")
    return lines


def _span(values: list[float]) -> str:
    return f"{min(values) * 100:.1f}-{max(values) * 100:.1f}%"


def _md_times(board: dict[str, Any]) -> list[str]:
    """Time per model."""
    lines: list[str] = []
    lines += [
        "",
        "## Time per model",
        "",
        "Total covers tuning (LightGBM), both cross-validations, the final fit and the test; "
        "CPU is this process's CPU time over the same span (on a shared machine wall time is "
        "mostly waiting for a core); final fit is the saved model's training time.",
        "",
        "| model | total s (wall) | CPU s | final fit s |",
        "|---|---:|---:|---:|",
    ]
    for m in board["models"]:
        sec = m["seconds"]
        lines.append(f"| {m['name']} | {sec['total']:.1f} | {sec['cpu']:.1f} | {sec['final_fit']:.2f} |")
    return lines


def _md_tuning(board: dict[str, Any]) -> list[str]:
    """LightGBM's search and its best parameters."""
    lines: list[str] = []
    for m in board["models"]:
        if m.get("tuning"):
            tu = m["tuning"]
            lines += [
                "",
                "## LightGBM tuning",
                "",
                f"Optuna {tu['sampler']}, {tu['trials']} trials ({tu['pruned']} pruned), objective: "
                f"{tu['objective']} (its own fold seed). Best CV RMSE {_fmt(tu['best_cv_rmse'])} vs "
                f"defaults {_fmt(tu['default_cv_rmse'])}; {tu['seconds']:.0f} s.",
                "",
                "Best parameters: "
                + ", ".join(f"`{k}={v}`" for k, v in m["params"].items() if k not in ("n_jobs", "verbose")),
            ]
    return lines


def render_chart(board: dict[str, Any], path: Path) -> None:
    """MAE and accuracy@0.5 per model and wine type, both protocols, paper as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m["name"] for m in board["models"]]
    x = np.arange(len(names))
    colors = {"red": "#8c1c2b", "white": "#d9b44a"}
    insight_row = bool(board.get("ensembles")) or any(m.get("intervals") for m in board["models"])
    rows = 3 if insight_row else 2
    fig, grid = plt.subplots(rows, 2, figsize=(13, 4.25 * rows), squeeze=False)
    axes = grid[:2]
    for ax in axes[0]:
        ax.sharex(axes[1][0])
    panels = (
        ("paper_cv", "Paper-style CV (duplicates not grouped)"),
        ("test", "Grouped protocol: held-out test"),
    )
    for row, (key, title) in enumerate(panels):
        for col, (metric, label) in enumerate((("mae", "MAE (MAD)"), ("acc_0_5", "accuracy @ T=0.5"))):
            ax = axes[row][col]
            for k, wine_type in enumerate(("red", "white")):
                values = [m["metrics"][key][wine_type][metric] for m in board["models"]]
                ax.bar(
                    x + (k - 0.5) * 0.38,
                    values,
                    0.38,
                    label=wine_type,
                    color=colors[wine_type],
                    edgecolor="black",
                    linewidth=0.4,
                )
                ax.axhline(
                    board["paper"][wine_type][metric],
                    color=colors[wine_type],
                    linestyle="--",
                    linewidth=1.4,
                    label=f"paper SVM ({wine_type})",
                )
            ax.set_title(f"{title}: {label}", fontsize=10)
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
            if metric == "acc_0_5":
                ax.set_ylim(0.4, 0.8)
            else:
                ax.set_ylim(0.3, 0.65)
            if row == 0 and col == 0:
                ax.legend(fontsize=8, ncol=2)
    for ax in axes[1]:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    for ax in axes[0]:
        ax.tick_params(labelbottom=False)
    if insight_row:
        _chart_blends(grid[2][0], board, colors)
        _chart_coverage(grid[2][1], board, colors)
    fig.suptitle(
        f"WineMeUp leaderboard ({board['mode']} mode, {board['generated_at']}): "
        "combined red+white models vs Cortez et al. 2009 SVM",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart_blends(ax: Any, board: dict[str, Any], colors: dict[str, str]) -> None:
    """Grouped-CV MAD per wine type: every saved family, then every blend (hatched)."""
    import numpy as np

    singles = [(m["name"], m["metrics"]["cv"]) for m in board["models"] if m["saved"]]
    blends = [(b["name"], b["metrics"]["cv"]) for b in (board.get("ensembles") or {}).get("blends", [])]
    entries = singles + blends
    x = np.arange(len(entries))
    for k, wine_type in enumerate(("red", "white")):
        ax.bar(
            x + (k - 0.5) * 0.38,
            [cv[wine_type]["mae"] for _, cv in entries],
            0.38,
            color=colors[wine_type],
            edgecolor="black",
            linewidth=0.4,
            hatch=None,
            label=wine_type,
        )
    for i in range(len(singles), len(entries)):
        ax.axvspan(i - 0.5, i + 0.5, color="#dddddd", zorder=0)
    values = [cv[t]["mae"] for _, cv in entries for t in ("red", "white")]
    ax.set_ylim(min(values) - 0.02, max(values) + 0.01)
    ax.set_xticks(x)
    ax.set_xticklabels([n for n, _ in entries], rotation=30, ha="right", fontsize=8)
    ax.set_title("Grouped CV MAD: saved families and blends (grey)", fontsize=10)
    ax.set_ylabel("MAE (MAD)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _chart_coverage(ax: Any, board: dict[str, Any], colors: dict[str, str]) -> None:
    """Held-out coverage of the served intervals at 80 % and 90 %, per model and wine type."""
    import numpy as np

    entries = [(m["name"], m["intervals"]) for m in board["models"] if m.get("intervals")]
    entries += [
        (b["name"], b["intervals"])
        for b in (board.get("ensembles") or {}).get("blends", [])
        if b.get("intervals")
    ]
    x = np.arange(len(entries))
    for k, wine_type in enumerate(("red", "white")):
        for level, marker in (("0.8", "o"), ("0.9", "s")):
            values = [
                iv["held_out_test"][wine_type][iv["held_out_test"][wine_type]["selected"]][level]["coverage"]
                for _, iv in entries
            ]
            ax.scatter(
                x + (k - 0.5) * 0.3,
                values,
                color=colors[wine_type],
                marker=marker,
                edgecolor="black",
                linewidth=0.4,
                label=f"{wine_type} {float(level):.0%}",
            )
    for nominal in (0.8, 0.9):
        ax.axhspan(nominal - 0.02, nominal + 0.02, color="#cccccc", alpha=0.5, zorder=0)
        ax.axhline(nominal, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(x)
    ax.set_xticklabels([n for n, _ in entries], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.7, 1.0)
    ax.set_title("Held-out coverage of the served intervals (band: nominal ± 2 points)", fontsize=10)
    ax.set_ylabel("coverage")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def write_reports(run: TrainingRun, reports_dir: Path) -> dict[str, Path]:
    """Write the three report files into ``reports_dir``; return their paths by file name."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    board = leaderboard(run)
    paths = {name: reports_dir / name for name in REPORT_FILES}
    paths["leaderboard.json"].write_text(json.dumps(board, indent=2, allow_nan=False) + "\n")
    paths["leaderboard.md"].write_text(render_markdown(board))
    render_chart(board, paths["leaderboard.png"])
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def rewrite_from_json(board_path: Path, reports_dir: Path) -> dict[str, Path]:
    """Render ``leaderboard.md`` and ``.png`` again from a ``leaderboard.json`` (no retraining)."""
    board = json.loads(board_path.read_text())
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: reports_dir / name for name in REPORT_FILES}
    if paths["leaderboard.json"].resolve() != board_path.resolve():
        paths["leaderboard.json"].write_text(json.dumps(board, indent=2, allow_nan=False) + "\n")
    paths["leaderboard.md"].write_text(render_markdown(board))
    render_chart(board, paths["leaderboard.png"])
    return paths


__all__ = [
    "PROTOCOLS",
    "REPORT_FILES",
    "leaderboard",
    "render_chart",
    "render_markdown",
    "rewrite_from_json",
    "write_reports",
]
