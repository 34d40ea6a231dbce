"""Which backend serves a run: the Scenario cloud, or the built-in local emulator.

`auto` means `scenario` when credentials are in the environment and `local` otherwise. The choice
and its reason are returned for the CLI to say on stderr; the kind is part of every fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import InvalidInput, Location, Problem

BackendKind = Literal["scenario", "local"]
_KEY_VARS = (("SCENARIO_API_KEY", "SCENARIO_API_SECRET"),
             ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET"))


@dataclass(frozen=True)
class BackendChoice:
    kind: BackendKind
    reason: str


def has_credentials(environ: Mapping[str, str]) -> bool:
    """True when a key and a secret are both set (either naming)."""
    return any(environ.get(key) and environ.get(secret) for key, secret in _KEY_VARS)


def resolve_backend(choice: str, environ: Mapping[str, str]) -> BackendChoice:
    """Turn `auto|scenario|local` into a concrete backend, with the reason to show the user."""
    if choice == "local":
        return BackendChoice("local", "asked for")
    if choice == "scenario":
        if not has_credentials(environ):
            raise InvalidInput(
                [
                    Problem(
                        Location("environment", path="SCENARIO_API_KEY"),
                        "the scenario backend needs SCENARIO_API_KEY and SCENARIO_API_SECRET "
                        "(or use --backend local for placeholder art)",
                    )
                ]
            )
        return BackendChoice("scenario", "asked for")
    if has_credentials(environ):
        return BackendChoice("scenario", "Scenario credentials found in the environment")
    return BackendChoice(
        "local",
        "no Scenario credentials in the environment: placeholder art from the built-in emulator",
    )
