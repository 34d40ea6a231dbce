"""Benchmarks cannot rot: each runs here with tiny sizes. Figures are not asserted."""

from __future__ import annotations

from bench import plan_noop


def test_plan_noop_benchmark_runs() -> None:
    rows = plan_noop.measure(items=20, times=1)
    table = plan_noop.render(rows, 20)
    for what in ("`pipeline plan` (whole process)", "`pipeline run` (whole process)", "read lock"):
        assert what in table
    assert all(samples and min(samples) > 0 for _, samples, _ in rows)
