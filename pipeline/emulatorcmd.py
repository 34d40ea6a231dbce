"""`pipeline emulator`: serve the local emulator of the Scenario API on loopback, knobs as flags.

The flags map one to one onto EmulatorConfig; the emulator itself is imported only when the
command runs, so every other command starts without it.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.console import say


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8787, show_default=True)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep jobs and assets in DIR across restarts.",
)
@click.option("--seed", type=int, default=None, help="Make ids, durations and faults repeatable.")
@click.option(
    "--job-duration",
    default="2",
    show_default=True,
    help="Seconds per job: N, fixed:N, uniform:A,B or lognormal:MU,SIGMA.",
)
@click.option(
    "--training-duration",
    default="10",
    show_default=True,
    help="Seconds a model training takes (the same forms).",
)
@click.option(
    "--parallel-cap",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs in flight before 429 parallel-custom-jobs.",
)
@click.option("--rate-limit", type=float, default=None, help="Requests per second on /v1.")
@click.option(
    "--bill-factor",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="What a generation bills against its dry-run estimate (a real bill can differ).",
)
@click.option(
    "--faults",
    default="",
    help="Failures to inject, per endpoint group (generate, jobs, assets, download, models): "
    "error_500, error_503, error_429, drop, timeout, slow, truncate, expire, job_failure, stuck; "
    "settings retry_after, slow_delay, timeout_delay. "
    "e.g. 'error_500=0.1,drop=0.05,generate:stuck=0.1,error_429=0.2,retry_after=5'.",
)
@click.option("--key", default="local", show_default=True, help="The API key it accepts.")
@click.option("--secret", default="local", show_default=True, help="The API secret it accepts.")
def emulator(
    host: str,
    port: int,
    state_dir: Path | None,
    seed: int | None,
    job_duration: str,
    training_duration: str,
    parallel_cap: int | None,
    rate_limit: float | None,
    bill_factor: float,
    faults: str,
    key: str,
    secret: str,
) -> None:
    """Serve the local emulator of the Scenario API (placeholder art, no account needed)."""
    import asyncio

    from pipeline.emulator import Emulator, EmulatorConfig
    from pipeline.emulator.server import serve

    try:
        config = EmulatorConfig(
            api_key=key,
            api_secret=secret,
            job_duration=job_duration,
            training_duration=training_duration,
            parallel_cap=parallel_cap,
            rate_limit=rate_limit,
            bill_factor=bill_factor,
            seed=seed,
            faults=faults,
            state_dir=state_dir,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None

    def ready(url: str) -> None:
        say(f"emulator serving {url} (key {key!r}); point SCENARIO_BASE_URL at it")

    try:
        asyncio.run(serve(Emulator(config), host, port, on_ready=ready))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
