"""API credentials: where they come from, and a form that never shows the secret.

Kept apart from the client so that deciding the backend (`plan`, which never calls the API) does
not import the HTTP stack.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

ENV_PAIRS = (
    ("SCENARIO_API_KEY", "SCENARIO_API_SECRET"),
    ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET"),
)


@dataclass(frozen=True, repr=False)
class Credentials:
    """An API key and secret; repr and str never show the secret, nor more than the key's start."""

    key: str
    secret: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials | None:
        """Our variable names, else the official SDK's; None unless a key and a secret are set."""
        for key_var, secret_var in ENV_PAIRS:
            key, secret = environ.get(key_var, ""), environ.get(secret_var, "")
            if key and secret:
                return cls(key, secret)
        return None

    def basic_token(self) -> str:
        """base64("key:secret"), the value after `Basic ` in the Authorization header."""
        return base64.b64encode(f"{self.key}:{self.secret}".encode()).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(key='{self.key[:2]}…', secret=<redacted>)"

    __str__ = __repr__
