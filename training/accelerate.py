"""Training's side of the accelerated path: convert each fitted model to ONNX, check parity.

The artifact goes into the model's own version directory in the store (see
:mod:`winemeup.runtimes.accelerated` for the layout), so serving never converts anything.
Converters, by framework:

* scikit-learn forests and HistGradientBoosting: built here from the fitted trees as one
  ``ai.onnx.ml`` opset-5 TreeEnsemble with float64 thresholds and leaves, so that each
  comparison is the one scikit-learn makes. skl2onnx's float32 trees send rows that sit near
  a threshold down the other branch.
* SVR pipeline: standard ONNX operators in double precision (skl2onnx's float32
  SVMRegressor flipped 7 grades over the data set).
* LightGBM: built here from the booster's dump, double-precision thresholds.
* XGBoost: onnxmltools (XGBoost itself splits in float32).
* CatBoost: its own ONNX export.

The parity check runs right after conversion on every row of the data set, through the same
runtime code that serves (:func:`winemeup.runtimes.accelerated.load_accelerated`); a failure
is recorded in ``parity.json`` and logged, and serving falls back to the framework.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from training.models import predict
from winemeup.runtimes.accelerated import (
    AcceleratedUnavailable,
    ParityReport,
    artifact_dir,
    open_accelerated,
    write_artifact,
    write_report,
)
from winemeup.runtimes.store import StoreEntry
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

N_FEATURES = len(SCHEMA)
TIMED_BATCH_SIZES = (1, 10, 100, 1000, 5000)
ONNX_OPSET = 21
ONNX_ML_OPSET = 5


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


# ---- tree ensembles in double precision -------------------------------------------------------


class _Trees:
    """A tree ensemble being assembled as one ONNX ``TreeEnsemble`` (``ai.onnx.ml`` opset 5).

    Opset 5 keeps thresholds, leaf weights and the output in float64, and stores leaves apart
    from splits: measured here on the 250-tree extra trees (1.49 M nodes), its file is 19.6 MB
    against 46.5 MB for the opset-3 ``TreeEnsembleRegressor``, and the loaded session about
    110 MB against 210 MB, at the same speed.
    """

    def __init__(self) -> None:
        self.featureids: list[int] = []
        self.splits: list[float] = []
        self.truenodeids: list[int] = []
        self.trueleafs: list[int] = []
        self.falsenodeids: list[int] = []
        self.falseleafs: list[int] = []
        self.leaf_weights: list[float] = []
        self.roots: list[int] = []

    def add_tree(
        self,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        is_leaf: np.ndarray,
    ) -> None:
        """One tree in array form, root at 0: go ``left`` when ``x[feature] <= threshold``."""
        interior = np.flatnonzero(~is_leaf)
        leaves = np.flatnonzero(is_leaf)
        node_index = {int(n): len(self.featureids) + k for k, n in enumerate(interior)}
        leaf_index = {int(n): len(self.leaf_weights) + k for k, n in enumerate(leaves)}
        self.leaf_weights.extend(float(value[n]) for n in leaves)
        if interior.size == 0:
            # A lone leaf: a split that always goes left, to that leaf.
            self.roots.append(len(self.featureids))
            self._split(0, float("inf"), (leaf_index[0], 1), (leaf_index[0], 1))
            return
        self.roots.append(node_index[0])
        for n in interior:
            sides = []
            for child in (int(left[n]), int(right[n])):
                sides.append((leaf_index[child], 1) if is_leaf[child] else (node_index[child], 0))
            self._split(int(feature[n]), float(threshold[n]), sides[0], sides[1])

    def _split(self, feature: int, threshold: float, true: tuple[int, int], false: tuple[int, int]) -> None:
        self.featureids.append(feature)
        self.splits.append(threshold)
        self.truenodeids.append(true[0])
        self.trueleafs.append(true[1])
        self.falsenodeids.append(false[0])
        self.falseleafs.append(false[1])

    def model(self, *, average: bool, base: float, cast_float32: bool) -> bytes:
        """An ONNX model: float64 input ``(n, 12)``, float64 output ``(n, 1)``."""
        from onnx import TensorProto, helper, numpy_helper

        def tensor(values: list[float], dtype: Any) -> Any:
            return numpy_helper.from_array(np.asarray(values, dtype=dtype))

        nodes = []
        source = "input"
        if cast_float32:
            # scikit-learn's trees walk float32(x) against float64 thresholds: round, then widen.
            nodes.append(helper.make_node("Cast", ["input"], ["x32"], to=TensorProto.FLOAT))
            nodes.append(helper.make_node("Cast", ["x32"], ["x64"], to=TensorProto.DOUBLE))
            source = "x64"
        out = "trees" if base else "score"
        nodes.append(
            helper.make_node(
                "TreeEnsemble",
                [source],
                [out],
                domain="ai.onnx.ml",
                aggregate_function=0 if average else 1,  # AVERAGE or SUM
                n_targets=1,
                post_transform=0,
                tree_roots=self.roots,
                nodes_featureids=self.featureids,
                nodes_splits=tensor(self.splits, np.float64),
                nodes_modes=tensor([0] * len(self.splits), np.uint8),  # BRANCH_LEQ
                nodes_truenodeids=self.truenodeids,
                nodes_trueleafs=self.trueleafs,
                nodes_falsenodeids=self.falsenodeids,
                nodes_falseleafs=self.falseleafs,
                leaf_targetids=[0] * len(self.leaf_weights),
                leaf_weights=tensor(self.leaf_weights, np.float64),
            )
        )
        initializers = []
        if base:
            initializers.append(numpy_helper.from_array(np.asarray([base], dtype=np.float64), "base"))
            nodes.append(helper.make_node("Add", [out, "base"], ["score"]))
        graph = helper.make_graph(
            nodes,
            "winemeup",
            [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [None, N_FEATURES])],
            [helper.make_tensor_value_info("score", TensorProto.DOUBLE, [None, 1])],
            initializer=initializers,
        )
        opsets = [helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", ONNX_ML_OPSET)]
        onnx_model = helper.make_model(graph, opset_imports=opsets, producer_name="winemeup")
        onnx_model.ir_version = 10
        return bytes(onnx_model.SerializeToString())


def _sklearn_forest(forest: Any) -> bytes:
    """Random forest / extra trees: the mean of the trees' leaf values."""
    trees = _Trees()
    for estimator in forest.estimators_:
        tree = estimator.tree_
        trees.add_tree(
            tree.children_left,
            tree.children_right,
            tree.feature,
            tree.threshold,
            tree.value.reshape(tree.node_count, -1)[:, 0],
            tree.children_left == -1,
        )
    return trees.model(average=True, base=0.0, cast_float32=True)


def _sklearn_hist_gradient_boosting(model: Any) -> bytes:
    """HistGradientBoosting: the sum of the predictors' leaf values plus the baseline."""
    trees = _Trees()
    for iteration in model._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            is_leaf = nodes["is_leaf"].astype(bool)
            if np.any(nodes["is_categorical"][~is_leaf]):
                raise ValueError("categorical splits are not converted")
            trees.add_tree(
                nodes["left"],
                nodes["right"],
                nodes["feature_idx"],
                nodes["num_threshold"],
                nodes["value"],
                is_leaf,
            )
    base = float(np.asarray(model._baseline_prediction).reshape(-1)[0])
    return trees.model(average=False, base=base, cast_float32=False)


def _lightgbm_arrays(root: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """A LightGBM tree dump as arrays (pre-order ids, root 0)."""
    left: list[int] = []
    right: list[int] = []
    feature: list[int] = []
    threshold: list[float] = []
    value: list[float] = []
    is_leaf: list[bool] = []
    stack: list[tuple[dict[str, Any], int, int]] = [(root, -1, 0)]  # node, parent, side (0 left)
    while stack:
        node, parent, side = stack.pop()
        node_id = len(left)
        if parent >= 0:
            (left if side == 0 else right)[parent] = node_id
        for column in (left, right, feature):
            column.append(-1)
        leaf = "leaf_value" in node
        is_leaf.append(leaf)
        value.append(float(node.get("leaf_value", 0.0)))
        threshold.append(float(node.get("threshold", 0.0)))
        if leaf:
            continue
        if node.get("decision_type", "<=") != "<=":
            raise ValueError(f"LightGBM decision type {node.get('decision_type')!r} is not converted")
        feature[node_id] = int(node["split_feature"])
        stack.append((node["right_child"], node_id, 1))
        stack.append((node["left_child"], node_id, 0))
    return tuple(np.asarray(a) for a in (left, right, feature, threshold, value, is_leaf))


def _lightgbm(booster: Any) -> bytes:
    """LightGBM: the sum of the trees' leaf values; ``x <= threshold`` in double precision."""
    trees = _Trees()
    for info in booster.dump_model()["tree_info"]:
        trees.add_tree(*_lightgbm_arrays(info["tree_structure"]))
    return trees.model(average=False, base=0.0, cast_float32=False)


def _xgboost(model: Any) -> bytes:
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    onnx_model = convert_xgboost(
        model, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], target_opset=15
    )
    return bytes(onnx_model.SerializeToString())


def _catboost(model: Any, scratch: Path) -> bytes:
    path = scratch / "catboost.onnx"
    model.save_model(str(path), format="onnx")
    return path.read_bytes()


def _svr(pipeline: Any) -> bytes:
    """Scaled RBF SVR in double precision from standard operators.

    ``score = sum_i dual_i * exp(-gamma * |z - sv_i|^2) + intercept`` with ``z`` the
    standardised row. skl2onnx's SVMRegressor works in float32 and was measured here 1.5e-4
    away from scikit-learn, with 7 grades flipped over the data set.
    """
    from onnx import TensorProto, helper, numpy_helper

    scaler, svr = pipeline.named_steps["scale"], pipeline.named_steps["svr"]
    if svr.kernel != "rbf":
        raise ValueError(f"SVR kernel {svr.kernel!r} is not converted")
    sv = np.asarray(svr.support_vectors_, dtype=np.float64)
    gamma = float(svr._gamma)

    def const(name: str, value: Any) -> Any:
        return numpy_helper.from_array(np.asarray(value, dtype=np.float64), name)

    initializers = [
        const("mean", scaler.mean_),
        const("scale", scaler.scale_),
        const("sv_t", sv.T),
        const("sv_sq", (sv * sv).sum(axis=1)),
        const("dual", np.asarray(svr.dual_coef_, dtype=np.float64).reshape(-1, 1)),
        const("intercept", np.asarray(svr.intercept_, dtype=np.float64).reshape(1)),
        const("minus_two", -2.0),
        const("minus_gamma", -gamma),
        numpy_helper.from_array(np.asarray([1], dtype=np.int64), "axis1"),
    ]
    node = helper.make_node
    nodes = [
        node("Sub", ["input", "mean"], ["centred"]),
        node("Div", ["centred", "scale"], ["z"]),
        node("Mul", ["z", "z"], ["z_sq"]),
        node("ReduceSum", ["z_sq", "axis1"], ["z_norm"], keepdims=1),
        node("MatMul", ["z", "sv_t"], ["dot"]),
        node("Mul", ["dot", "minus_two"], ["cross"]),
        node("Add", ["cross", "z_norm"], ["partial"]),
        node("Add", ["partial", "sv_sq"], ["dist"]),
        node("Mul", ["dist", "minus_gamma"], ["exponent"]),
        node("Exp", ["exponent"], ["kernel"]),
        node("MatMul", ["kernel", "dual"], ["weighted"]),
        node("Add", ["weighted", "intercept"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes,
        "winemeup-svr",
        [helper.make_tensor_value_info("input", TensorProto.DOUBLE, [None, N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, [None, 1])],
        initializer=initializers,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="winemeup"
    )
    onnx_model.ir_version = 10
    return bytes(onnx_model.SerializeToString())


def convert(name: str, estimator: Any, scratch: Path) -> tuple[bytes, str]:
    """The ONNX bytes of a fitted model, and which converter made them."""
    if name in ("random_forest", "extra_trees"):
        return _sklearn_forest(estimator), f"winemeup trees (scikit-learn {_version('scikit-learn')})"
    if name == "hist_gradient_boosting":
        return _sklearn_hist_gradient_boosting(estimator), "winemeup trees (HistGradientBoosting)"
    if name == "lightgbm":
        booster = getattr(estimator, "booster_", estimator)
        return _lightgbm(booster), f"winemeup trees (LightGBM {_version('lightgbm')})"
    if name == "xgboost":
        return _xgboost(estimator), f"onnxmltools {_version('onnxmltools')}"
    if name == "catboost":
        return _catboost(estimator, scratch), f"catboost {_version('catboost')} save_model(format='onnx')"
    if name == "svr":
        return _svr(estimator), "winemeup RBF kernel (standard ONNX operators, float64)"
    raise ValueError(f"no ONNX converter for model {name!r}")


# ---- export and parity ---------------------------------------------------------------------------


def _median_seconds(fn: Any, rows: np.ndarray, repeat: int) -> float:
    fn(rows)
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(rows)
        timings.append(time.perf_counter() - started)
    return float(sorted(timings)[len(timings) // 2])


def time_paths(framework_predict: Any, onnx_predict: Any, rows: np.ndarray) -> list[dict[str, Any]]:
    """Median predict time of both paths per batch size (the serving crossover)."""
    out = []
    for size in TIMED_BATCH_SIZES:
        batch = np.ascontiguousarray(np.resize(rows, (size, rows.shape[1])))
        repeat = 15 if size <= 10 else 5
        out.append(
            {
                "rows": size,
                "framework_seconds": _median_seconds(framework_predict, batch, repeat),
                "onnx_seconds": _median_seconds(onnx_predict, batch, repeat),
            }
        )
    return out


def export_accelerated(
    entry: StoreEntry,
    framework: str,
    estimator: Any,
    rows: np.ndarray,
    framework_predict: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ParityReport:
    """Convert, write into the entry's version directory, and check parity through the runtime.

    ``rows``: every row of the data set. ``framework_predict``: the framework's own predict
    (default: the fitted estimator's). Never raises for a conversion or parity failure: the
    model is then served by its framework, and ``parity.json`` says why.
    """
    directory = artifact_dir(entry.path)
    started = time.perf_counter()
    framework_predict = framework_predict or (lambda r: predict(estimator, r))
    expected = framework_predict(rows)
    failed = ParityReport(rows=len(rows), max_abs_diff=float("inf"), grade_flips=len(rows))
    report: dict[str, Any] = {"model": entry.tag, "onnxruntime": _version("onnxruntime")}
    try:
        onnx_bytes, converter = convert(entry.name, estimator, directory.parent)
    except Exception as e:
        logger.warning("%s: no accelerated artifact, conversion failed: %s", entry.tag, e)
        write_report(directory, {**report, "error": f"conversion failed: {e}", "parity": failed.as_dict()})
        return failed
    report.update(
        converter=converter, convert_seconds=time.perf_counter() - started, onnx_bytes=len(onnx_bytes)
    )
    write_artifact(directory, onnx_bytes, rows, expected)
    try:
        runtime, parity = open_accelerated(entry, framework)
    except AcceleratedUnavailable as e:
        logger.warning("%s: accelerated artifact not usable: %s", entry.tag, e)
        write_report(directory, {**report, "error": str(e), "parity": failed.as_dict()})
        return failed
    report["parity"] = parity.as_dict()
    report["input_type"] = "double" if runtime.input_dtype is np.float64 else "float"
    report["timings"] = time_paths(framework_predict, runtime.predict, rows)
    write_report(directory, report)
    log = logger.info if parity.passed else logger.warning
    log(
        "%s: ONNX artifact (%s, %.1f MB) %s parity: largest difference %.2g over %d rows, %d grades flip",
        entry.tag,
        converter,
        len(onnx_bytes) / 1e6,
        "passes" if parity.passed else "FAILS",
        parity.max_abs_diff,
        parity.rows,
        parity.grade_flips,
    )
    return parity


def accelerate_store(home: Path, names: list[str], rows: np.ndarray) -> dict[str, ParityReport]:
    """(Re)build the accelerated artifact of the latest version of each named model in a store.

    For stores trained before artifacts existed: the framework's model is loaded from the
    store and converted; its own predict on ``rows`` is the parity reference.
    """
    from winemeup.runtimes import FRAMEWORK_OF_MODEL, load_framework
    from winemeup.runtimes.store import read_entry

    reports = {}
    for name in names:
        entry = read_entry(home, name)
        framework = entry.labels.get("framework") or FRAMEWORK_OF_MODEL[name]
        runtime = load_framework(entry, framework)
        reports[name] = export_accelerated(entry, framework, runtime.model, rows, runtime.predict)
    return reports
