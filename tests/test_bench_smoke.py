"""Benchmarks cannot rot: each runs here with tiny sizes. Figures are not asserted."""

from __future__ import annotations

from bench import plan_noop


def test_plan_noop_benchmark_runs() -> None:
    rows = plan_noop.measure(items=20, repeat=1)
    table = plan_noop.render(rows, 20)
    assert "`pipeline plan` (whole process)" in table
    assert len(rows) == 10
