"""Project settings: the optional `pipeline.yaml` at the project root, and command-line overrides.

Strict like the manifests (unknown keys are errors with a did-you-mean, located at their line);
a missing or empty file means every default. Reading manifests is manifest.py's job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from pipeline.errors import InvalidInput, Location, Problem
from pipeline.yamlsrc import (
    Issue,
    Key,
    Source,
    SourceError,
    describe,
    did_you_mean,
    validation_issues,
)

__all__ = ["SETTINGS_FILE", "Backend", "Settings", "load_settings"]

SETTINGS_FILE = "pipeline.yaml"
Backend = Literal["auto", "scenario", "local"]
_EXPECTED = {
    "manifests": "a glob relative to the project root, or a non-empty list of them",
    "output": "a folder path (non-empty text)",
    "lockfile": "a file path (non-empty text)",
    "backend": "one of 'auto', 'scenario', 'local'",
    "concurrency": "a positive integer",
    "job_timeout": "a positive number of seconds",
    "request_timeout": "a positive number of seconds",
    "budget": "a number of creative units (0 or more)",
    "remote_collection": "true or false",
}


@dataclass(frozen=True)
class Settings:
    """What pipeline.yaml can set; every field has a default."""

    manifests: tuple[str, ...] = ("manifests/*.yaml",)  # globs relative to the project root
    output: str = "output"
    lockfile: str = "assets.lock"
    backend: Backend = "auto"
    concurrency: int = 8  # ceiling on jobs in flight
    job_timeout: float = 1800.0  # seconds a job may take from submission before its item fails
    request_timeout: float = 60.0  # seconds to wait for one API answer before it counts as lost
    budget: float | None = None  # most creative units one run may spend; None: no limit
    remote_collection: bool = False  # keep a Scenario collection per local one (a manifest wins)

    def with_overrides(self, **flags: Any) -> Settings:
        """These settings with command-line flags applied; None means the flag was not given."""
        given = {name: value for name, value in flags.items() if value is not None}
        unknown = set(given) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"not a setting: {', '.join(sorted(unknown))}")
        if isinstance(given.get("manifests"), tuple):
            given["manifests"] = list(given["manifests"])
        issues = _validate(given)
        if issues:
            where = [Location("command line", path=f"--{issue.path[0]}") for issue in issues]
            raise InvalidInput(
                [Problem(at, i.message) for at, i in zip(where, issues, strict=True)]
            )
        return replace(self, **_settings_fields(given))


def load_settings(root: Path) -> Settings:
    """`root/pipeline.yaml` read strictly; the defaults when there is no such file."""
    path = root / SETTINGS_FILE
    if not path.exists():
        return Settings()
    try:
        source = Source.read(path, SETTINGS_FILE)
        data, problems = source.parse()
    except SourceError as err:
        raise InvalidInput([err.problem]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        message = f"expected a mapping of settings at the top level, got {describe(data)}"
        problems.append(Problem(source.locate(()), message))
    else:
        problems += source.problems(_validate(data))
    if problems:
        raise InvalidInput(problems)
    return Settings(**_settings_fields(data))


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_Glob = Annotated[str, Field(min_length=1)]


@with_config(ConfigDict(extra="forbid", strict=True))
class _SettingsDoc(TypedDict, total=False):
    manifests: Annotated[list[_Glob], BeforeValidator(_as_list), Field(min_length=1)]
    output: Annotated[str, Field(min_length=1)]
    lockfile: Annotated[str, Field(min_length=1)]
    backend: Backend
    concurrency: Annotated[int, Field(ge=1)]
    job_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    request_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    budget: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    remote_collection: bool


@functools.cache
def _settings_adapter() -> TypeAdapter[_SettingsDoc]:
    return TypeAdapter(_SettingsDoc)  # built on first use: importing this module stays cheap


def _validate(data: dict[Any, Any]) -> list[Issue]:
    try:
        _settings_adapter().validate_python(data)
    except ValidationError as err:
        return validation_issues(err, expected=_expected, unknown_key=_unknown_key)
    issues = []
    globs = data.get("manifests", [])
    for index, pattern in enumerate(_as_list(globs)):
        if PurePosixPath(pattern).is_absolute() or PureWindowsPath(pattern).anchor:
            path: tuple[Key, ...] = (
                ("manifests", index) if isinstance(globs, list) else ("manifests",)
            )
            message = f"expected a glob relative to the project root, got {pattern!r}"
            issues.append(Issue(path, message))
    return issues


def _expected(loc: tuple[Key, ...]) -> str:
    if loc[:1] == ("manifests",) and len(loc) > 1:
        return "a glob relative to the project root (non-empty text)"
    return _EXPECTED.get(str(loc[0]), "a mapping of settings") if loc else "a mapping of settings"


def _unknown_key(parent: tuple[Key, ...], key: Key) -> str:
    if not isinstance(key, str):
        return f"unknown key {describe(key)}"
    return f"unknown key {key!r}{did_you_mean(key, list(_EXPECTED))}"


def _settings_fields(data: dict[str, Any]) -> dict[str, Any]:
    values = dict(data)
    if "manifests" in values:
        values["manifests"] = tuple(_as_list(values["manifests"]))
    return values
