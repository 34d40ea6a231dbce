"""The SDK peer: what an experienced user writes with the official async SDK (scenario-sdk 2.4.0).

`AsyncScenario` with its default settings (its built-in retries: max_retries=2, POST included),
`asyncio.gather` over all items under an `asyncio.Semaphore(concurrency)` held for the whole item:
run the model, poll the job every 2 s until a terminal status, look up each output asset and
download its URL with a plain `httpx.AsyncClient`. An item that raises counts failed; others go on.

Run: `python -m bench.peers.sdk --items ITEMS.json --out DIR --concurrency N [--poll 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import httpx
from scenario_sdk import AsyncScenario

from bench.peers.common import TERMINAL, Item, Tally, credentials, load_items, parse_args


async def run_item(
    client: AsyncScenario, http: httpx.AsyncClient, item: Item, out: Path, poll: float
) -> int:
    """Generate one item, wait for its job, download its outputs; how many files were written."""
    response = await client.generate.run_model(item["model"], body=item["body"])
    job_id = response.job.job_id
    while True:
        job = (await client.jobs.retrieve(job_id)).job
        if job.status in TERMINAL:
            break
        await asyncio.sleep(poll)
    if job.status != "success":
        raise RuntimeError(f"job {job_id} {job.status}: {job.metadata.error or 'no reason given'}")
    asset_ids = job.metadata.asset_ids or []
    for n, asset_id in enumerate(asset_ids):
        asset = (await client.assets.retrieve(asset_id)).asset
        image = await http.get(asset.url)
        image.raise_for_status()
        await asyncio.to_thread((out / f"{item['id']}_{n}.png").write_bytes, image.content)
    return len(asset_ids)


async def run(args: argparse.Namespace) -> Tally:
    """Every item of --items, at most --concurrency at once."""
    base_url, key, secret = credentials()
    items = load_items(args.items)
    args.out.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    semaphore = asyncio.Semaphore(args.concurrency)
    options: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}

    async with (
        AsyncScenario(api_key=key, api_secret=secret, base_url=base_url, **options) as client,
        httpx.AsyncClient(**options) as http,
    ):

        async def task(item: Item) -> None:
            async with semaphore:
                try:
                    written = await run_item(client, http, item, args.out, args.poll)
                    tally.files += written  # not `+= await`: that reads `files` before awaiting
                    tally.done += 1
                except Exception as error:
                    tally.fail(item["id"], error)

        await asyncio.gather(*(task(item) for item in items))
    return tally


def main() -> None:
    args = parse_args("A typical async SDK script: every item at once, under a semaphore.", True)
    asyncio.run(run(args)).emit()


if __name__ == "__main__":
    main()
