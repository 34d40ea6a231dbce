"""The guide peer: Scenario's integration guide as its authors would write it, small and honest.

Synchronous httpx with Basic auth. Submit every item in turn (on a 429 from the parallel-job cap,
sleep Retry-After seconds, default 1, and resend the same item: without that the script cannot
finish); then, job after job, poll every 2 s until a terminal status, look up each output asset
and download its URL. Any other error fails that item and the script goes on; no other retries.

Run: `python -m bench.peers.guide --items ITEMS.json --out DIR [--poll 2]`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.peers.common import TERMINAL, Item, Tally, credentials, load_items, parse_args


def retry_after(response: httpx.Response) -> float:
    """The Retry-After header in seconds; 1 s when missing or not a number."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def submit(client: httpx.Client, item: Item) -> str:
    """POST the generate request until it is not rate limited; the new job's id."""
    while True:
        response = client.post(f"/generate/custom/{item['model']}", json=item["body"])
        if response.status_code == 429:
            wait = retry_after(response)
            print(f"{item['id']}: rate limited, retrying in {wait:g}s", file=sys.stderr)
            time.sleep(wait)
            continue
        response.raise_for_status()
        job_id: str = response.json()["job"]["jobId"]
        return job_id


def wait_for_job(client: httpx.Client, job_id: str, poll: float) -> dict[str, Any]:
    """Poll the job until its status is terminal (check first, then sleep)."""
    while True:
        response = client.get(f"/jobs/{job_id}")
        response.raise_for_status()
        job: dict[str, Any] = response.json()["job"]
        if job["status"] in TERMINAL:
            return job
        time.sleep(poll)


def download(client: httpx.Client, item_id: str, job: dict[str, Any], out: Path) -> int:
    """Fetch every output of a finished job to `<out>/<item id>_<n>.png`; how many."""
    asset_ids = job.get("metadata", {}).get("assetIds", [])
    for n, asset_id in enumerate(asset_ids):
        response = client.get(f"/assets/{asset_id}")
        response.raise_for_status()
        image = client.get(response.json()["asset"]["url"])
        image.raise_for_status()
        (out / f"{item_id}_{n}.png").write_bytes(image.content)
    return len(asset_ids)


def main() -> None:
    args = parse_args("The integration guide's script: submit all, then poll and download each.")
    base_url, key, secret = credentials()
    items = load_items(args.items)
    args.out.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    timeout = args.timeout or 5.0  # httpx's own default is 5 s
    with httpx.Client(base_url=base_url, auth=(key, secret), timeout=timeout) as client:
        jobs: list[tuple[str, str]] = []
        for item in items:
            try:
                jobs.append((item["id"], submit(client, item)))
            except (httpx.HTTPError, KeyError, ValueError) as error:
                tally.fail(item["id"], error)
        for item_id, job_id in jobs:
            try:
                job = wait_for_job(client, job_id, args.poll)
                if job["status"] != "success":
                    reason = job.get("metadata", {}).get("error", "no reason given")
                    tally.fail(item_id, f"job {job_id} {job['status']}: {reason}")
                    continue
                tally.files += download(client, item_id, job, args.out)
                tally.done += 1
            except (httpx.HTTPError, KeyError, ValueError) as error:
                tally.fail(item_id, error)
    tally.emit()


if __name__ == "__main__":
    main()
