"""pipeline.yaml: defaults when absent, strict validation with located messages, flag overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import InvalidInput
from pipeline.manifest import load_manifests
from pipeline.settings import Settings, load_settings


def problems(root: Path, text: str) -> list[str]:
    (root / "pipeline.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        load_settings(root)
    return [str(problem) for problem in caught.value.problems]


def test_no_file_means_every_default(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert settings == Settings()
    assert settings.manifests == ("manifests/*.yaml",)
    assert (settings.output, settings.lockfile) == ("output", "assets.lock")
    assert (settings.backend, settings.concurrency) == ("auto", 8)


def test_an_empty_file_means_every_default(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text("# nothing set yet\n", encoding="utf-8")
    assert load_settings(tmp_path) == Settings()


def test_reads_every_setting(tmp_path: Path) -> None:
    text = """\
manifests: [art/*.yaml, more/**/*.yaml]
output: build/art
lockfile: art.lock
backend: local
concurrency: 2
job_timeout: 90
"""
    (tmp_path / "pipeline.yaml").write_text(text, encoding="utf-8")
    assert load_settings(tmp_path) == Settings(
        manifests=("art/*.yaml", "more/**/*.yaml"),
        output="build/art",
        lockfile="art.lock",
        backend="local",
        concurrency=2,
        job_timeout=90.0,
    )


def test_a_single_glob_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text("manifests: art/*.yaml\n", encoding="utf-8")
    assert load_settings(tmp_path).manifests == ("art/*.yaml",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concurency: 4\n", "1:1: concurency: unknown key 'concurency' (did you mean "
         "'concurrency'?)"),
        ("colour: red\n", "1:1: colour: unknown key 'colour' (expected one of: manifests, "
         "output, lockfile, backend, concurrency, job_timeout, request_timeout, budget, "
         "remote_collection)"),
        ("concurrency: 0\n", "1:14: concurrency: expected a positive integer, got 0"),
        ("concurrency: true\n", "1:14: concurrency: expected a positive integer, got a boolean "
         "(true)"),
        ("concurrency: many\n", "1:14: concurrency: expected a positive integer, got 'many'"),
        ("job_timeout: 0\n", "1:14: job_timeout: expected a positive number of seconds, got 0"),
        ("job_timeout: .nan\n", "1:14: job_timeout: expected a positive number of seconds, got "
         "the number nan"),
        ("backend: cloud\n", "1:10: backend: expected one of 'auto', 'scenario', 'local', got "
         "'cloud'"),
        ("output: ''\n", "1:9: output: expected a folder path (non-empty text), got ''"),
        ("lockfile: [a]\n", "1:11: lockfile: expected a file path (non-empty text), got a list"),
        ("manifests: []\n", "1:12: manifests: expected a glob relative to the project root, or "
         "a non-empty list of them, got an empty list"),
        ("manifests: [a, 3]\n", "1:16: manifests[1]: expected a glob relative to the project "
         "root (non-empty text), got 3; put it in quotes to make it text"),
        ("manifests: /abs/*.yaml\n", "1:12: manifests: expected a glob relative to the project "
         "root, got '/abs/*.yaml'"),
        ("manifests: [a, 'C:\\m\\*.yaml']\n", "1:16: manifests[1]: expected a glob relative to "
         "the project root, got 'C:\\\\m\\\\*.yaml'"),
        ("budget: -1\n", "1:9: budget: expected a number of creative units (0 or more), got -1"),
        ("remote_collection: x\n", "1:20: remote_collection: expected true or false, got 'x'"),
        ("- a\n", "1:1: expected a mapping of settings at the top level, got a list"),
        ("output: [\n", "2:1: invalid YAML: did not find expected node content (while parsing "
         "a flow node at line 2, column 1)"),
        ("output: a\noutput: b\n", "2:1: output: duplicate key 'output' (also at "
         "pipeline.yaml:1:1)"),
    ],
)  # fmt: skip
def test_problems_are_located(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [f"pipeline.yaml:{expected}"]


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    assert problems(tmp_path, "backend: cloud\nconcurrency: 0\nbudgte: 3\n") == [
        "pipeline.yaml:1:10: backend: expected one of 'auto', 'scenario', 'local', got 'cloud'",
        "pipeline.yaml:2:14: concurrency: expected a positive integer, got 0",
        "pipeline.yaml:3:1: budgte: unknown key 'budgte' (did you mean 'budget'?)",
    ]


def test_flags_override_the_file_and_none_means_not_given() -> None:
    settings = Settings(backend="local", concurrency=3)
    assert settings.with_overrides(backend=None, concurrency=None) == settings
    changed = settings.with_overrides(backend="scenario", concurrency=16, manifests=["a/*.yaml"])
    assert changed == Settings(manifests=("a/*.yaml",), backend="scenario", concurrency=16)
    assert settings.with_overrides(manifests="b/*.yaml").manifests == ("b/*.yaml",)


def test_bad_flags_are_invalid_input_naming_the_flag() -> None:
    with pytest.raises(InvalidInput) as caught:
        Settings().with_overrides(concurrency=0, backend="cloud")
    assert [str(problem) for problem in caught.value.problems] == [
        "command line: --backend: expected one of 'auto', 'scenario', 'local', got 'cloud'",
        "command line: --concurrency: expected a positive integer, got 0",
    ]
    with pytest.raises(TypeError):
        Settings().with_overrides(colour="red")


def test_load_manifests_uses_the_settings_globs(tmp_path: Path) -> None:
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "props.yaml").write_text(
        "items:\n  - {id: a, prompt: p, model: m}\n", encoding="utf-8"
    )
    (tmp_path / "pipeline.yaml").write_text("manifests: art/*.yaml\n", encoding="utf-8")
    settings = load_settings(tmp_path)
    assert [c.file for c in load_manifests(tmp_path, settings)] == ["art/props.yaml"]
    assert load_manifests(tmp_path, Settings()) == []
