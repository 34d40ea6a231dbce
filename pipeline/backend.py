"""Which backend serves a run: the Scenario cloud, or the built-in local emulator.

`auto` means `scenario` when credentials are in the environment and `local` otherwise. The choice
and its reason are returned for the CLI to say on stderr; the kind is part of every fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pipeline.credentials import Credentials
from pipeline.errors import InvalidInput, Location, Problem

if TYPE_CHECKING:
    from pipeline.client import ApiClient
    from pipeline.emulator import Emulator

BackendKind = Literal["scenario", "local"]


@dataclass(frozen=True)
class BackendChoice:
    kind: BackendKind
    reason: str


def has_credentials(environ: Mapping[str, str]) -> bool:
    """True when a key and a secret are both set (either naming)."""
    return Credentials.from_env(environ) is not None


def resolve_backend(
    choice: str, environ: Mapping[str, str], *, calls_api: bool = True
) -> BackendChoice:
    """Turn `auto|scenario|local` into a concrete backend, with the reason to show the user.

    `calls_api=False` (a plan with no cost preview): `scenario` needs no credentials then.
    """
    if choice == "local":
        return BackendChoice("local", "asked for")
    if choice == "scenario":
        if not calls_api and not has_credentials(environ):
            return BackendChoice("scenario", "asked for; planning needs no credentials")
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


LOCAL_JOB_DURATION = "fixed:0.2"  # placeholder art is quick; long enough to show progress
LOCAL_TRAINING_DURATION = "fixed:1"  # a placeholder LoRA: nothing to learn
LOCAL_FIRST_POLL = 0.25
LOCAL_POLL_FLOOR = 0.02  # the in-process emulator costs nothing to ask: a chain's steps follow fast


def local_emulator() -> Emulator:
    """The in-process emulator that serves the `local` backend."""
    from pipeline.emulator import Emulator, EmulatorConfig  # here: `plan` never needs it

    return Emulator(
        EmulatorConfig(job_duration=LOCAL_JOB_DURATION, training_duration=LOCAL_TRAINING_DURATION)
    )


def open_client(
    choice: BackendChoice,
    environ: Mapping[str, str],
    *,
    emulator: Emulator | None = None,
    timeout: float = 60.0,
) -> ApiClient:
    """An API client for the chosen backend (close it with `aclose` or `async with`).

    `timeout`: seconds to wait for an answer (connecting gets at most 5 of them).
    """
    import httpx

    from pipeline.client import ApiClient, base_url_from_env  # here: `plan` never needs it

    limits = httpx.Timeout(timeout, connect=min(5.0, timeout))

    if choice.kind == "local":
        emu = emulator or local_emulator()
        credentials = Credentials(emu.config.api_key, emu.config.api_secret)
        return ApiClient(
            base_url=emu.base_url,
            credentials=credentials,
            transport=emu.transport(),
            timeout=limits,
        )
    found = Credentials.from_env(environ)
    assert found is not None, "resolve_backend checked the credentials"
    return ApiClient(base_url=base_url_from_env(environ), credentials=found, timeout=limits)
