"""Reliability suites: a fast slice in `make test`, the full mode in `make reliability`.

`PIPELINE_FULL=1` (what `make reliability` sets) switches every suite to its full size: use
`scale(fast, full)` for case counts, and the hypothesis profile picks itself.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FULL = os.environ.get("PIPELINE_FULL") == "1"


def scale(fast: int, full: int) -> int:
    """How many cases to try: `fast` in the default test run, `full` under `make reliability`."""
    return full if FULL else fast


settings.register_profile(
    "reliability-fast",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "reliability-full",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = "reliability-full" if FULL else "reliability-fast"
