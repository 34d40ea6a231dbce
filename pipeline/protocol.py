"""The Scenario API's conventions that need no connection, for `client.py` to apply.

Owns credentials and the base URL from the environment, path segments, data URLs, Retry-After,
reading error bodies, and reading a 2xx body into `pipeline.wire` models (a body that does not fit
is an `ApiTransient`). Everything here is pure. It sends nothing and does not decide which error a
failed request is: that is `client.py`'s seam, the one place httpx errors become ours.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from pipeline import wire
from pipeline.errors import ApiError, ApiTransient, InvalidInput, Location, Problem

DEFAULT_BASE_URL = "https://api.cloud.scenario.com/v1"
REASON_LIMIT = 300  # characters of an error body kept as the reason
DryRun = bool | Literal["api"]

_ADAPTERS: dict[object, TypeAdapter[Any]] = {}
_T = TypeVar("_T")


def base_url_from_env(environ: Mapping[str, str]) -> str:
    """`SCENARIO_BASE_URL`, checked, or the public API."""
    value = environ.get("SCENARIO_BASE_URL") or DEFAULT_BASE_URL
    try:
        url = httpx.URL(value)
        usable = url.scheme in ("http", "https") and bool(url.host) and not url.userinfo
        usable = usable and not url.query and not url.fragment
    except httpx.InvalidURL:
        usable = False
    if not usable:
        where = Location("environment", path="SCENARIO_BASE_URL")
        raise InvalidInput([Problem(where, f"expected an http(s) URL like {DEFAULT_BASE_URL}")])
    return value.rstrip("/")


def path_segment(value: str) -> str:
    """Percent-encode one path segment, `/` included, as the SDK does; refuse `.` and `..`.

    Ids come from manifests and from the API's answers: an unusable one fails its item with an
    ApiError (never retried), not the whole run.
    """
    if value.lower().replace("%2e", ".") in ("", ".", ".."):
        raise ApiError(f"refused: {value!r} is not a usable id in a URL path")
    return quote(value, safe="!$&'()*+,;=:@")


def display_url(url: httpx.URL) -> str:
    """A URL fit for messages: no user info, no query (signed URLs carry their signature there)."""
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"


def data_url(data: bytes, mime_type: str) -> str:
    """`data:<mime>;base64,...`, which the API accepts wherever it takes an image."""
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def dry_run_param(dry_run: DryRun) -> str | None:
    """The `dryRun` query value: `true`, `api`, or None for a real run."""
    if dry_run == "api":
        return "api"
    return "true" if dry_run else None


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `Retry-After` (seconds or an HTTP date).

    None when absent, unparseable or negative. Not capped: capping is the scheduler's policy.
    """
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:  # HTTP dates are GMT
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if seconds >= 0 else None


def _finite(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def error_fields(content: bytes) -> tuple[str, str, dict[str, Any]]:
    """(reason, hint, details) of an error body. The API types no error body, so read liberally:
    `reason`/`message`/`error`/`detail`, else the raw text, cut to REASON_LIMIT characters."""
    try:
        body = json.loads(content) if content else None
    except ValueError:  # not JSON, or not UTF-8
        body = None
    if not isinstance(body, dict):
        body = {}
    keys = ("reason", "message", "error", "detail")
    reason = next((v for k in keys if isinstance(v := body.get(k), str) and v), "")
    if not reason:
        reason = " ".join(content.decode("utf-8", "replace").split())
    if len(reason) > REASON_LIMIT:
        reason = reason[:REASON_LIMIT] + "…"
    hint, details = body.get("hint"), body.get("details")
    return (
        reason,
        hint if isinstance(hint, str) else "",
        details if isinstance(details, dict) else {},
    )


@dataclass(frozen=True)
class Reply:
    """A 2xx JSON object and the request it answers, read into wire models with clear errors."""

    method: str
    path: str
    status: int
    body: dict[str, Any]

    @classmethod
    def read(cls, method: str, path: str, status: int, content: bytes) -> Reply:
        """The body as a JSON object, or an `ApiTransient` saying it is malformed."""
        try:
            body = json.loads(content)
        except ValueError:  # not JSON, or not UTF-8
            body = None
        reply = cls(method, path, status, body if isinstance(body, dict) else {})
        if not isinstance(body, dict):
            raise reply.malformed("the body is not a JSON object")
        return reply

    @property
    def dry(self) -> bool:
        """True for a dry run's 269, which carries a cost estimate and no job."""
        return self.status == 269

    def get(self, key: str, tp: type[_T]) -> _T:
        """The body's `key`, as `tp`; missing or misshapen is malformed."""
        if key not in self.body:
            raise self.malformed(f"no {key!r} in the body")
        return self.parse(self.body[key], tp, key)

    def cost(self) -> wire.Cost:
        """The cost fields beside the job."""
        return self.parse(self.body, wire.Cost, "cost")

    def parse(self, value: Any, tp: type[_T], where: str) -> _T:
        """`value` as `tp`, or an `ApiTransient` naming the first fields that do not fit."""
        adapter = _ADAPTERS.get(tp) or _ADAPTERS.setdefault(tp, TypeAdapter(tp))
        try:
            parsed: _T = adapter.validate_python(value)
            return parsed
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in (where, *e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)[:3]
            ]
        raise self.malformed("; ".join(problems))

    def malformed(self, detail: str) -> ApiTransient:
        """The error for a 2xx that cannot be read.

        Transient rather than rejected: such a body comes from a broken server, proxy or deploy,
        not from a wrong request, so a bounded number of further tries may help. Its status is the
        2xx received, which tells the scheduler that a paid request may have been accepted and
        must be reconciled before it is sent again.
        """
        reason = f"malformed response: {detail}"
        return ApiTransient(self.status, reason, method=self.method, path=self.path)
