"""Memory while downloading: 20 images of 4096x4096 against 20 of 512x512, peak RSS of the process.

The images (noisy, a few MB each as PNG, under the API's 6 MB upload limit) are uploaded to a
served emulator first; then a separate process, measured whole, looks each one up and collects it
the way `pipeline run` does (pipeline.collect.fetch: streamed to disk, checked in constant memory,
placed atomically), 20 at a time. Streaming means the peak should not grow with the image's size.
Run: `python -m bench.download_rss`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

from bench.measure import Sample, run_process, table
from bench.throughput import Scenario, emulator, env_for
from pipeline.backend import BackendChoice, open_client


def image(size: int, seed: int) -> bytes:
    """A PNG that does not compress to nothing: coarse noise blown up, over a gradient."""
    noise = Image.effect_noise((size // 4, size // 4), 40 + seed).convert("RGB")
    picture = noise.resize((size, size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=1)
    return out.getvalue()


async def _upload(count: int, size: int, env: dict[str, str]) -> list[str]:
    async with open_client(BackendChoice("scenario", "bench"), env) as client:
        ids = []
        for n in range(count):
            asset = await client.upload_asset(f"big-{n}.png", image(size, n))
            ids.append(asset.id)
        return ids


async def _collect(ids: list[str], out: Path) -> None:
    """The measured side: what the collector does for each output of a run."""
    from pipeline.collect import Target, fetch

    async with open_client(BackendChoice("scenario", "bench"), os.environ) as client:

        async def one(asset_id: str) -> None:
            asset = await client.get_asset(asset_id)
            await fetch(client, asset, Target(f"{asset_id}.png", out / f"{asset_id}.png"))

        await asyncio.gather(*(one(asset_id) for asset_id in ids))


def measure(count: int = 20) -> list[tuple[str, Sample, int]]:
    """Peak RSS collecting `count` images of 512x512, then of 4096x4096."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        for size in (512, 4096):
            scenario = Scenario("download", items=count, cap=count, duration="fixed:0.05")
            with emulator(scenario) as url:
                env = env_for(url)
                ids = asyncio.run(_upload(count, size, env))
                out = Path(tmp) / str(size)
                out.mkdir()
                args = [sys.executable, "-m", "bench.download_rss", "--collect", str(out), *ids]
                sample = run_process(args, env=env)
                total = sum(p.stat().st_size for p in out.glob("*.png"))
                rows.append((f"{count} images of {size}x{size}", sample, total))
    return rows


def render(rows: list[tuple[str, Sample, int]]) -> str:
    return table(
        ["collecting", "bytes downloaded", "peak RSS", "wall"],
        [
            [what, f"{total / 1e6:.0f} MB", f"{s.peak_rss_mb:.0f} MB", f"{s.seconds:.1f} s"]
            for what, s, total in rows
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.download_rss", description=__doc__)
    parser.add_argument("--collect", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("ids", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collect:
        asyncio.run(_collect(args.ids, args.collect))
        return
    print(render(measure()))


if __name__ == "__main__":
    main()
