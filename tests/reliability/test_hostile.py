"""Hostile or broken server: what a lying, broken or malicious API can make `pipeline run` do.

The real CLI runs in process with the `scenario` backend (SCENARIO_BASE_URL and credentials) against
`hostile.HostileApp` on loopback: the emulator with one behaviour replaced. For every case:
  - the item fails with a clear reason (exit 1, the reason in --json), or succeeds safely;
  - no traceback, and nothing outside `output/` and `.pipeline/` is written (the repo and a sibling
    folder are snapshotted before and after);
  - a good file from an earlier clean run is never replaced by a bad one (`--force` against the
    hostile server: same bytes, lock entry unchanged), and no temp file is left behind.
The download size cap is lowered to 1 MB (RunOptions.max_bytes) so "too large" is cheap to serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.emulator import Emulator, EmulatorConfig
from pipeline.limits import PollClock
from pipeline.schedule import Runner
from tests.e2e import FAST, invoke, loopback_env
from tests.reliability.hostile import (
    HostileApp,
    Mode,
    bytes_app,
    huge,
    redirect_app,
    serve_app,
    stream_app,
)

CAP_BYTES = 1_000_000
MANIFEST = """\
    collection: props
    defaults:
      model: model_bfl-flux-2-dev
      width: 256
      height: 256
    items:
      - id: barrel
        prompt: wooden barrel, game prop
        seed: 1
      - id: crate
        prompt: wooden crate, game prop
        seed: 2
        outputs: 2
"""
FILES = ["props/barrel.png", "props/crate_1.png", "props/crate_2.png"]


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Server:
    app: HostileApp
    emu: Emulator
    url: str  # the API base URL, on 127.0.0.1
    other: str  # the same server as another host: http://localhost:<port>

    def env(self) -> dict[str, str]:
        return loopback_env(self.url)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    emu = Emulator(EmulatorConfig(**FAST))
    app = HostileApp(emu)
    with serve_app(app) as port:
        yield Server(app, emu, f"http://127.0.0.1:{port}/v1", f"http://localhost:{port}")


@pytest.fixture
def mode(server: Server) -> Iterator[Mode]:
    """The hostile behaviour of this test; the server is honest again afterwards."""
    server.app.mode = Mode()
    server.app.elsewhere_headers.clear()
    yield server.app.mode
    server.app.mode = Mode()


@pytest.fixture(autouse=True)
def small_cap_quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Runner gets a 1 MB download cap, polls early (the jobs take 50 ms), and waits at
    most 20 ms whatever its backoff asks (retries of bad downloads would take seconds)."""
    original = Runner.__init__

    async def quick(seconds: float) -> None:
        await asyncio.sleep(min(max(seconds, 0.0), 0.02))

    def init(self: Runner, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("sleep", quick)
        original(self, *args, **kwargs)
        self.options = replace(self.options, max_bytes=CAP_BYTES, first_poll=0.05)
        self.collector.max_bytes = CAP_BYTES
        self.polls = PollClock(first=0.05)

    monkeypatch.setattr(Runner, "__init__", init)


@pytest.fixture(scope="module")
def clean_run(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A game generated once against the honest server: the good files to protect."""
    root = tmp_path_factory.mktemp("clean") / "game"
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "props.yaml").write_text(textwrap.dedent(MANIFEST))
    (root / "pipeline.yaml").write_text("request_timeout: 2\n")
    server.app.mode = Mode()
    with pytest.MonkeyPatch.context() as patch:
        small_cap_quick_polls.__wrapped__(patch)  # type: ignore[attr-defined]
        result = invoke(root, "run", env=server.env())
    assert result.exit_code == 0, result.stderr
    return root


@pytest.fixture
def game(clean_run: Path, tmp_path: Path) -> Path:
    """A copy of the clean game, beside a sibling folder that must stay untouched."""
    root = tmp_path / "game"
    shutil.copytree(clean_run, root)
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "keep.txt").write_text("not yours")
    return root


def snapshot_outside(root: Path) -> dict[str, str]:
    """sha256 of every file under the test's folder except what a run may write: the repo's
    output/, .pipeline/ and assets.lock (checked on its own where it must not change)."""
    base = root.parent
    seen = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(root) if path.is_relative_to(root) else None
        if rel is not None and rel.parts[:1] in (("output",), (".pipeline",), ("assets.lock",)):
            continue
        if path.is_file() or path.is_symlink():
            seen[path.relative_to(base).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            seen[path.relative_to(base).as_posix() + "/"] = ""
    return seen


def outputs(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root / "output").as_posix(): p.read_bytes()
        for p in (root / "output").rglob("*")
        if p.is_file()
    }


def run_against(server: Server, root: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result = invoke(root, "run", "--json", *args, env=server.env())
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exit_code in (0, 1), result.stderr
    return result.exit_code, json.loads(result.stdout), result.stderr


def _files(app: Callable[[Server], Any]) -> Callable[[Server, Mode], None]:
    def arrange(server: Server, mode: Mode) -> None:
        mode.files = app(server)

    return arrange


def _redirect_elsewhere(body: bytes) -> Callable[[Server, Mode], None]:
    def arrange(server: Server, mode: Mode) -> None:
        server.app.elsewhere = bytes_app(body)
        mode.files = redirect_app(f"{server.other}/elsewhere/x.png")

    return arrange


def _asset(change: Callable[[dict[str, Any], Server], None]) -> Callable[[Server, Mode], None]:
    def arrange(server: Server, mode: Mode) -> None:
        def rewrite(doc: Any) -> Any:
            change(doc["asset"], server)
            return doc

        mode.rewrite["GET /v1/assets/"] = rewrite

    return arrange


def _set(key: str, value: Any) -> Callable[[dict[str, Any], Server], None]:
    def change(asset: dict[str, Any], server: Server) -> None:
        asset[key] = value

    return change


BAD_DOWNLOADS: dict[str, tuple[Callable[[Server, Mode], None], str]] = {
    "not-an-image": (_files(lambda s: bytes_app(b"<html>hello</html>")), "not a readable image"),
    "empty": (_files(lambda s: bytes_app(b"")), "empty download"),
    "jpeg-announced-as-png": (_files(lambda s: bytes_app(_jpeg(256, 256))), "announced as"),
    "wrong-size": (_files(lambda s: bytes_app(_png(100, 100))), "announced as 256x256"),
    "truncated-png": (_files(lambda s: bytes_app(_png(256, 256)[:300])), "truncated"),
    "announced-too-large": (
        _files(lambda s: stream_app(huge(10_000), content_length=10**10)),
        "over the cap",
    ),
    "streamed-too-large": (_files(lambda s: stream_app(huge(3 * CAP_BYTES))), "cap"),
    "redirect-to-file": (_files(lambda s: redirect_app("file:///etc/passwd")), "not http"),
    "redirect-to-ftp": (_files(lambda s: redirect_app("ftp://127.0.0.1/x.png")), "not http"),
    "redirect-to-data": (_files(lambda s: redirect_app("data:image/png;base64,AAAA")), "not http"),
    "redirect-to-javascript": (_files(lambda s: redirect_app("javascript:alert(1)")), "not http"),
    "redirect-loop": (_files(lambda s: redirect_app(lambda scope: scope["path"])), "redirects"),
    "redirect-elsewhere-garbage": (_redirect_elsewhere(b"GIF89a nope"), "not a readable image"),
    "url-is-a-file": (_asset(_set("url", "file:///etc/passwd")), "only http(s)"),
    "url-is-garbage": (_asset(_set("url", "http://[::1")), "only http(s)"),
    "mime-is-html": (_asset(_set("mimeType", "text/html")), "unsupported type"),
    "url-missing": (_asset(lambda a, s: a.pop("url")), "malformed"),
    "id-wrong-type": (_asset(_set("id", 12)), "malformed"),
}


BAD_DOWNLOAD_PARAMS = sorted(BAD_DOWNLOADS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", BAD_DOWNLOAD_PARAMS)
def test_a_bad_download_fails_the_item_and_never_replaces_a_good_file(
    name: str, server: Server, mode: Mode, game: Path
) -> None:
    """`--force` against a server whose downloads are bad: every item fails with the reason,
    the good files and the lock stay byte for byte, nothing is written outside the repo."""
    arrange, reason = BAD_DOWNLOADS[name]
    arrange(server, mode)
    before_files, before_lock = outputs(game), (game / "assets.lock").read_bytes()
    outside = snapshot_outside(game)
    code, doc, _stderr = run_against(server, game, "--force")
    assert code == 1
    for item in doc["items"]:
        assert item["state"] == "failed", item
        assert reason in item["error"], item["error"]
    assert outputs(game) == before_files
    assert (game / "assets.lock").read_bytes() == before_lock
    assert snapshot_outside(game) == outside
    assert not [p for p in game.rglob("*") if p.name.endswith((".part", ".tmp"))]


def test_a_redirect_to_another_host_is_followed_without_credentials(
    server: Server, mode: Mode, game: Path
) -> None:
    """Signed URLs may redirect to a CDN: followed, the image checked, and no Authorization
    header (no API credential) is ever sent to the other host."""
    server.app.elsewhere = bytes_app(_png(256, 256))
    mode.files = redirect_app(f"{server.other}/elsewhere/x.png")
    outside = snapshot_outside(game)
    code, _doc, stderr = run_against(server, game, "--force")
    assert code == 0, stderr
    assert server.app.elsewhere_headers, "the redirect was not followed"
    assert all("authorization" not in h for h in server.app.elsewhere_headers)
    assert sorted(outputs(game)) == sorted([*FILES, "props/index.json"])
    assert snapshot_outside(game) == outside


ESCAPING_IDS = ["../../x", "/etc/passwd", "asset_../..", "..\\..\\x", "%2e%2e/x", "x\x00y"]


def test_asset_ids_that_look_like_paths_cannot_escape_output(
    server: Server, mode: Mode, game: Path
) -> None:
    """The job lists asset ids like `../../x`: files are still named by the item, inside
    output/, and the ids are only data in the lock."""
    names = iter(ESCAPING_IDS * 3)

    def rewrite(doc: Any) -> Any:
        ids = doc["job"]["metadata"].get("assetIds", [])
        for index, real in enumerate(ids):
            alias = next(names)
            mode.aliases[alias] = real
            ids[index] = alias
        return doc

    mode.rewrite["GET /v1/jobs/"] = rewrite
    outside = snapshot_outside(game)
    code, doc, _stderr = run_against(server, game, "--force")
    assert snapshot_outside(game) == outside
    assert sorted(outputs(game)) == sorted([*FILES, "props/index.json"])
    for item in doc["items"]:  # done safely, or refused clearly
        assert item["state"] == "generated" or item["error"], item
    print(f"\nescaping ids: exit {code}, {[(i['state'], i['error']) for i in doc['items']]}")


@pytest.mark.parametrize("where", ["asset-id", "job-id"])
def test_a_dot_dot_id_from_the_server_fails_only_its_item(
    where: str, server: Server, mode: Mode, game: Path
) -> None:
    """`..` as an asset id (in the job) or as the job id (in the generate answer)."""

    def asset_id(doc: Any) -> Any:
        if doc["job"]["metadata"].get("assetIds"):
            doc["job"]["metadata"]["assetIds"][0] = ".."
        return doc

    def job_id(doc: Any) -> Any:
        doc["job"]["jobId"] = ".."
        return doc

    if where == "asset-id":
        mode.rewrite["GET /v1/jobs/"] = asset_id
    else:
        mode.rewrite["POST /v1/generate/"] = job_id
    result = invoke(game, "run", "--json", "--force", env=server.env())
    assert "Traceback" not in result.stderr
    assert result.exit_code == 1
    assert all(item["error"] for item in json.loads(result.stdout)["items"])


def _raw(body: bytes) -> Callable[[Any], Any]:
    return lambda doc: body


def _job(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def rewrite(doc: Any) -> Any:
        change(doc["job"])
        return doc

    return rewrite


MALFORMED: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    # (route, rewrite, expected: "done" or the reason every item fails with)
    "generate-not-json": ("POST /v1/generate/", _raw(b"<html>oops"), "done"),
    "generate-json-array": ("POST /v1/generate/", _raw(b"[1, 2]"), "done"),
    "generate-no-job": ("POST /v1/generate/", lambda doc: {"creativeUnitsCost": 1}, "done"),
    "generate-job-id-number": ("POST /v1/generate/", _job(lambda j: j.update(jobId=5)), "done"),
    "job-status-number": ("GET /v1/jobs/", _job(lambda j: j.update(status=7)), "malformed"),
    "job-asset-ids-string": (
        "GET /v1/jobs/",
        _job(lambda j: j["metadata"].update(assetIds="asset_x")),
        "malformed",
    ),
    "job-not-json": ("GET /v1/jobs/", _raw(b"\xff\xfe garbage"), "malformed"),
    "job-missing-metadata": ("GET /v1/jobs/", _job(lambda j: j.pop("metadata")), "malformed"),
    "job-success-without-assets": (
        "GET /v1/jobs/",
        _job(lambda j: j.update(status="success", metadata={})),
        "asked for",
    ),
    "asset-not-an-object": ("GET /v1/assets/", lambda doc: {"asset": [1]}, "malformed"),
    "model-not-json": ("GET /v1/models/", _raw(b"null"), "malformed"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_answers_end_done_or_as_clear_failures(
    name: str, server: Server, mode: Mode, game: Path
) -> None:
    """Malformed JSON, missing fields, wrong types. A garbled answer to a paid request is
    reconciled against the job list (so done, and paid once); a garbled read fails the item."""
    route, rewrite, expected = MALFORMED[name]
    mode.rewrite[route] = rewrite
    before_files = outputs(game)
    outside = snapshot_outside(game)
    paid = dict(server.emu.stats.generates)
    code, doc, stderr = run_against(server, game, "--force")
    new = {k: v - paid.get(k, 0) for k, v in server.emu.stats.generates.items()}
    assert all(v <= 1 for v in new.values()), f"paid twice: {new}"
    if expected == "done":
        assert code == 0, stderr
    else:
        assert code == 1, stderr
        for item in doc["items"]:
            assert item["state"] == "failed" and expected in item["error"], item
        assert outputs(game) == before_files
    assert snapshot_outside(game) == outside
    print(f"\n{name}: exit {code}, {sum(new.values())} paid")


_TRICKLE_SERVER = """
import asyncio, sys, time
from pipeline.emulator import Emulator, EmulatorConfig
from tests.reliability.hostile import HostileApp, Mode, serve_app, stream_app, trickle
app = HostileApp(Emulator(EmulatorConfig(job_duration="fixed:0.05", seed=3)))
app.mode = Mode(files=stream_app(trickle))
with serve_app(app) as port:
    print(port, flush=True)
    time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_a_download_that_never_ends_is_cut_by_a_deadline(tmp_path: Path) -> None:
    """request_timeout 1 s and --job-timeout 2 s: the run must end (the item failed) within
    8 s, whatever the server does with the body."""
    root = tmp_path / "game"
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "props.yaml").write_text(textwrap.dedent(MANIFEST))
    (root / "pipeline.yaml").write_text("request_timeout: 1\n")
    repo = Path(__file__).parent.parent.parent
    hostile = subprocess.Popen(
        [sys.executable, "-c", _TRICKLE_SERVER],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hostile.stdout is not None
        port = int(hostile.stdout.readline())
        env = loopback_env(f"http://127.0.0.1:{port}/v1")
        command = [sys.executable, "-m", "pipeline", "-C", str(root), "run", "--json"]
        try:
            result = subprocess.run(
                [*command, "--job-timeout", "2"],
                env=env,
                capture_output=True,
                text=True,
                timeout=8,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the run was still going after 8 s")
        assert result.returncode == 1, result.stderr
    finally:
        hostile.kill()
        hostile.wait(10)
        if hostile.stdout is not None:
            hostile.stdout.close()
