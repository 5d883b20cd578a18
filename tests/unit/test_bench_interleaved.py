"""benchmarks.load.interleaved: the sides of a ratio take turns, and each reports its median run."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.load import Result, interleaved


def test_sides_take_turns_only_the_first_round_warms_up_and_the_median_run_is_kept() -> None:
    calls: list[tuple[str, int]] = []
    figures = {"ours": [5_000, 4_000, 6_000], "seed": [2_500, 2_400, 1_000]}

    def side(name: str) -> Callable[[int], Result]:
        def run(round_: int) -> Result:
            calls.append((name, round_))
            return Result(
                requests=figures[name][round_] * 10, seconds=10.0, p50_ms=1.0, p99_ms=float(round_), errors=0
            )

        return run

    out = interleaved({"ours": side("ours"), "seed": side("seed")}, rounds=3)
    assert calls == [("ours", 0), ("seed", 0), ("ours", 1), ("seed", 1), ("ours", 2), ("seed", 2)]
    assert out["ours"].rps == 5_000 and out["ours"].p99_ms == 0.0 and out["ours"].runs == 3
    assert out["seed"].rps == 2_400 and out["seed"].p99_ms == 1.0  # the latencies of that same run


def test_one_round_is_the_single_run() -> None:
    one = Result(requests=100, seconds=1.0, p50_ms=1.0, p99_ms=2.0, errors=0)
    assert interleaved({"a": lambda r: one}, rounds=1) == {"a": one}
