"""What both peer scripts share: the command line, the items file and the one-line summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

TERMINAL = frozenset({"success", "failure", "canceled"})
DEFAULT_BASE_URL = "https://api.cloud.scenario.com/v1"
MAX_ERRORS = 5


class Item(TypedDict):
    """One entry of ITEMS.json: the body is the generate request body, sent as is."""

    id: str
    model: str
    body: dict[str, Any]


def parse_args(description: str, concurrency: bool = False) -> argparse.Namespace:
    """--items, --out, --poll, --timeout (and --concurrency for the SDK peer)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--items", type=Path, required=True, help="ITEMS.json")
    parser.add_argument("--out", type=Path, required=True, help="where the PNGs go")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between job polls")
    parser.add_argument(
        "--timeout", type=float, default=None, help="per-request timeout (default: the library's)"
    )
    if concurrency:
        parser.add_argument("--concurrency", type=int, default=4, help="items at once")
    return parser.parse_args()


def load_items(path: Path) -> list[Item]:
    items: list[Item] = json.loads(path.read_text())
    return items


def credentials() -> tuple[str, str, str]:
    """(base URL, API key, API secret) from SCENARIO_BASE_URL / _API_KEY / _API_SECRET."""
    base = os.environ.get("SCENARIO_BASE_URL", DEFAULT_BASE_URL)
    return base, os.environ["SCENARIO_API_KEY"], os.environ["SCENARIO_API_SECRET"]


@dataclass
class Tally:
    """Items done and failed, files written, the first few errors; `emit` prints the summary."""

    done: int = 0
    failed: int = 0
    files: int = 0
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def fail(self, item_id: str, error: BaseException | str) -> None:
        """Count the item failed and say why on stderr."""
        self.failed += 1
        why = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        text = f"{item_id}: {why}"
        print(text, file=sys.stderr)
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text[:300])

    def emit(self) -> None:
        summary = {
            "done": self.done,
            "failed": self.failed,
            "files": self.files,
            "seconds": round(time.perf_counter() - self.started, 3),
            "errors": self.errors,
        }
        print(json.dumps(summary), flush=True)
