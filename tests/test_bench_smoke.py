"""Benchmarks cannot rot: each runs here with tiny sizes. Figures are not asserted."""

from __future__ import annotations

from pathlib import Path

from bench import download_rss, plan_noop, startup, throughput, workflow


def test_plan_noop_benchmark_runs() -> None:
    rows = plan_noop.measure(items=20, times=1)
    table = plan_noop.render(rows, 20)
    for what in ("`pipeline plan` (whole process)", "`pipeline run` (whole process)", "read lock"):
        assert what in table
    assert all(samples and min(samples) > 0 for _, samples, _ in rows)


def test_throughput_benchmark_runs(tmp_path: Path) -> None:
    scenario = throughput.Scenario("smoke", items=3, cap=2, duration="fixed:0.05")
    result = throughput.run_contender("pipeline", scenario, tmp_path)
    assert result.done == 3 and result.stats["duplicate_generates"] == 0
    assert "| smoke | pipeline |" in throughput.render([result], 0.01)


def test_memory_and_startup_benchmarks_run() -> None:
    rows = download_rss.measure(1)
    assert [what for what, _, _ in rows] == ["1 images of 512x512", "1 images of 4096x4096"]
    assert "peak RSS" in download_rss.render(rows)
    assert "`pipeline plan`, one item" in startup.render(startup.measure(1))


def test_workflow_benchmark_runs() -> None:
    passes, floor = workflow.measure(items=3, cap=2, duration=0.05, training=0.05, faults="")
    assert [run.name for run in passes][:2] == ["first", "no-op"]
    assert all(run.exit_code == 0 and run.stats["duplicates"] == 0 for run in passes)
    assert passes[1].stats["requests"] == {}  # the no-op calls nothing
    assert passes[2].jobs() == 3  # the upscale factor: one job per item
    assert "| first |" in workflow.render(passes, floor, 3)
