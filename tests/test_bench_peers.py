"""The benchmark's peer scripts (bench/peers) run end to end against a served emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import generates, loopback_env, served

ROOT = Path(__file__).parent.parent
MODEL = "model_bfl-flux-2-dev"
ITEMS = 6
PNG = b"\x89PNG\r\n\x1a\n"


def write_items(path: Path) -> Path:
    body = {"width": 256, "height": 256, "numOutputs": 1}  # the model's smallest size
    items = [
        {"id": f"item-{n}", "model": MODEL, "body": {"prompt": f"icon {n}", "seed": n, **body}}
        for n in range(ITEMS)
    ]
    path.write_text(json.dumps(items))
    return path


@pytest.mark.parametrize(
    "peer, extra",
    [("guide", []), ("sdk", ["--concurrency", "3"])],
)
def test_peer_generates_every_item_once(tmp_path: Path, peer: str, extra: list[str]) -> None:
    items = write_items(tmp_path / "items.json")
    out = tmp_path / "out"
    with served(job_duration="fixed:0.05", parallel_cap=3) as (emu, url):
        args = [sys.executable, "-m", f"bench.peers.{peer}", "--items", str(items)]
        args += ["--out", str(out), "--poll", "0.05", *extra]
        result = subprocess.run(
            args, cwd=ROOT, env=loopback_env(url), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["done"] == ITEMS, summary
        assert summary["failed"] == 0 and summary["files"] == ITEMS
        assert emu.stats.duplicate_generates == 0
        assert generates(emu) == ITEMS
    for n in range(ITEMS):
        assert (out / f"item-{n}_0.png").read_bytes().startswith(PNG)
