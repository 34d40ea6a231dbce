"""The async Scenario API client, and the one seam where httpx errors become ours (`_send`).

Owns the wire: paths, query strings, bodies, auth, parsing replies into `pipeline.wire` models, and
turning transport failures and error statuses into the `ApiError` tree. It never retries and never
sleeps (the scheduler does both, guided by `transient` and `retry_after`), and it does not decide
what a job's status means for the run.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from time import time
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from pipeline import __version__
from pipeline.errors import (
    ApiAuthError,
    ApiError,
    ApiRejected,
    ApiStatusError,
    ApiTransient,
    ApiUnreachable,
    InvalidInput,
    Location,
    Problem,
)
from pipeline.wire import (
    Asset,
    CaptionResult,
    Collection,
    Cost,
    GenerateResult,
    Job,
    Model,
    TrainingImage,
    TrainResult,
)

DEFAULT_BASE_URL = "https://api.cloud.scenario.com/v1"
DEFAULT_TIMEOUT = httpx.Timeout(60, connect=5)
USER_AGENT = f"pipeline/{__version__}"
COLLECTION_BATCH = 49  # the most asset ids PUT /collections/{id}/assets takes at once
DryRun = bool | Literal["api"]

_ENV_PAIRS = (
    ("SCENARIO_API_KEY", "SCENARIO_API_SECRET"),
    ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET"),
)
# Failures that happen before a single byte of the request left: sending again is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_TRANSIENT_STATUSES = frozenset({408, 409, 429})
_REASON_LIMIT = 300
_MAX_REDIRECTS = 5
_DOWNLOAD_SCHEMES = frozenset({"http", "https"})
_T = TypeVar("_T")

_JOB = TypeAdapter(Job)
_JOBS = TypeAdapter(list[Job])
_ASSET = TypeAdapter(Asset)
_ASSETS = TypeAdapter(list[Asset])
_MODEL = TypeAdapter(Model)
_COLLECTION = TypeAdapter(Collection)
_TRAINING_IMAGE = TypeAdapter(TrainingImage)
_CAPTIONS = TypeAdapter(list[str])
_COST = TypeAdapter(Cost)


@dataclass(frozen=True, repr=False)
class Credentials:
    """An API key and secret. Neither repr nor str shows the secret, or more than the key's start."""

    key: str
    secret: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials | None:
        """Our variable names first, then the official SDK's; None unless a key and secret are set."""
        for key_var, secret_var in _ENV_PAIRS:
            key, secret = environ.get(key_var, ""), environ.get(secret_var, "")
            if key and secret:
                return cls(key, secret)
        return None

    def __repr__(self) -> str:
        return f"Credentials(key='{self.key[:2]}…', secret=<redacted>)"

    __str__ = __repr__


def base_url_from_env(environ: Mapping[str, str]) -> str:
    """`SCENARIO_BASE_URL`, checked, or the public API."""
    value = environ.get("SCENARIO_BASE_URL") or DEFAULT_BASE_URL
    try:
        url = httpx.URL(value)
        usable = url.scheme in ("http", "https") and url.host and not url.userinfo
        usable = usable and not url.query and not url.fragment
    except httpx.InvalidURL:
        usable = False
    if not usable:
        where = Location("environment", path="SCENARIO_BASE_URL")
        raise InvalidInput([Problem(where, "expected an http(s) URL like " + DEFAULT_BASE_URL)])
    return value.rstrip("/")


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
            if when.tzinfo is None:  # RFC 9110 dates are GMT
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if seconds >= 0 else None


def _finite(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _segment(value: str) -> str:
    """Percent-encode one path segment, `/` included (as the SDK does)."""
    if value.strip(".") == "" or value.replace("%2e", ".").replace("%2E", ".").strip(".") == "":
        raise ValueError(f"not a usable id in a URL path: {value!r}")
    return quote(value, safe="!$&'()*+,;=:@")


def _display(url: httpx.URL) -> str:
    """A URL fit for messages: no user info, no query (signed URLs carry their signature there)."""
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"


def _data_url(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def _dry_run_param(dry_run: DryRun) -> str | None:
    if dry_run == "api":
        return "api"
    return "true" if dry_run else None


@dataclass(frozen=True)
class _Reply:
    """A 2xx JSON object, with the request it answers, for parsing and for clear errors."""

    method: str
    path: str
    status: int
    body: dict[str, Any]

    @property
    def dry(self) -> bool:
        """True for a dry run's 269, which carries a cost estimate and no job."""
        return self.status == 269

    def get(self, key: str, adapter: TypeAdapter[_T]) -> _T:
        if key not in self.body:
            raise self.malformed(f"no {key!r} in the body")
        return self.parse(self.body[key], adapter, key)

    def cost(self) -> Cost:
        return self.parse(self.body, _COST, "cost")

    def parse(self, value: Any, adapter: TypeAdapter[_T], where: str) -> _T:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in (where, *e['loc']))}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)[:3]
            ]
        raise self.malformed("; ".join(problems))

    def malformed(self, detail: str) -> ApiTransient:
        # A 2xx we cannot read comes from a broken server or proxy, not from a wrong request, so
        # it is transient: the scheduler may try a bounded number of times more. Its status is the
        # 2xx received, which tells the scheduler that a paid request may have been accepted.
        reason = f"malformed response: {detail}"
        return ApiTransient(self.status, reason, method=self.method, path=self.path)


class ApiClient:
    """The Scenario REST API, one method per call the pipeline makes. See scenario-api.md."""

    def __init__(
        self,
        *,
        base_url: str,
        credentials: Credentials,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        project_id: str | None = None,
        now: Callable[[], float] = time,
    ) -> None:
        self._base_url = base_url
        self._credentials = credentials
        self._project_id = project_id
        self._now = now
        token = base64.b64encode(f"{credentials.key}:{credentials.secret}".encode()).decode()
        self._authorization = f"Basic {token}"
        self._secrets = tuple(s for s in (credentials.key, credentials.secret, token) if s)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # --- jobs -----------------------------------------------------------------------------------

    async def generate(
        self, model_id: str, body: Mapping[str, Any], *, dry_run: DryRun = False
    ) -> GenerateResult:
        """Start a job on a model; a dry run (269) prices it and returns no job."""
        path = f"/generate/custom/{_segment(model_id)}"
        reply = await self._call("POST", path, json=dict(body), dry_run=dry_run)
        return GenerateResult(None if reply.dry else reply.get("job", _JOB), reply.cost())

    async def get_job(self, job_id: str) -> Job:
        """The job as it is now."""
        return (await self._call("GET", f"/jobs/{_segment(job_id)}")).get("job", _JOB)

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        types: Sequence[str] | None = None,
        created_after: str | None = None,
        updated_after: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Every matching job, page after page while a token follows, even after an empty page."""
        query: dict[str, Any] = {
            "pageSize": page_size,
            "status": status,
            "types": ",".join(types) if types else None,
            "createdAfter": created_after,
            "updatedAfter": updated_after,
        }
        token: str | None = None
        while True:
            reply = await self._call("GET", "/jobs", params={**query, "paginationToken": token})
            for job in reply.get("jobs", _JOBS):
                yield job
            following = reply.body.get("nextPaginationToken")
            if not following:
                return
            if not isinstance(following, str) or following == token:
                raise reply.malformed(f"unusable nextPaginationToken {following!r}")
            token = following

    async def cancel_job(self, job_id: str) -> Job:
        """Ask for a job to be canceled; the job comes back as the server now sees it."""
        path = f"/jobs/{_segment(job_id)}/action"
        return (await self._call("POST", path, json={"action": "cancel"})).get("job", _JOB)

    # --- assets ---------------------------------------------------------------------------------

    async def get_asset(self, asset_id: str) -> Asset:
        """One asset, with a fresh signed `url`."""
        return (await self._call("GET", f"/assets/{_segment(asset_id)}")).get("asset", _ASSET)

    async def get_assets(self, asset_ids: Sequence[str]) -> list[Asset]:
        """Several assets in one request."""
        if not asset_ids:
            return []
        reply = await self._call("POST", "/assets/get-bulk", json={"assetIds": list(asset_ids)})
        return reply.get("assets", _ASSETS)

    async def upload_asset(
        self,
        name: str,
        data: bytes,
        *,
        mime_type: str = "image/png",
        collection_ids: Sequence[str] = (),
    ) -> Asset:
        """Store an image (under 6 MB) as an asset, sent as a base64 data URL."""
        body: dict[str, Any] = {"name": name, "image": _data_url(data, mime_type)}
        if collection_ids:
            body["collectionIds"] = list(collection_ids)
        return (await self._call("POST", "/assets", json=body)).get("asset", _ASSET)

    # --- models and training --------------------------------------------------------------------

    async def get_model(self, model_id: str) -> Model:
        """A model, with its `inputs` schema."""
        return (await self._call("GET", f"/models/{_segment(model_id)}")).get("model", _MODEL)

    async def create_model(
        self,
        *,
        name: str,
        type: str,
        short_description: str | None = None,
        collection_ids: Sequence[str] = (),
    ) -> Model:
        """A new, empty model (status `new`) ready for training images."""
        body: dict[str, Any] = {"name": name, "type": type}
        if short_description is not None:
            body["shortDescription"] = short_description
        if collection_ids:
            body["collectionIds"] = list(collection_ids)
        return (await self._call("POST", "/models", json=body)).get("model", _MODEL)

    async def add_training_image(
        self,
        model_id: str,
        *,
        data: bytes | None = None,
        name: str | None = None,
        asset_id: str | None = None,
        preset: str | None = None,
        mime_type: str = "image/png",
    ) -> TrainingImage:
        """Add one image to a model's training set: raw bytes, or an existing asset."""
        if (data is None) == (asset_id is None):
            raise ValueError("give exactly one of data and asset_id")
        body: dict[str, Any]
        if asset_id is not None:
            body = {"assetId": asset_id}
        else:
            assert data is not None
            body = {"data": _data_url(data, mime_type), "name": name or "image"}
        if preset is not None:
            body["preset"] = preset
        path = f"/models/{_segment(model_id)}/training-images"
        return (await self._call("POST", path, json=body)).get("trainingImage", _TRAINING_IMAGE)

    async def train(
        self,
        model_id: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        dry_run: DryRun = False,
    ) -> TrainResult:
        """Start training; a dry run (269) prices it and returns no job and no model."""
        body = {} if parameters is None else {"parameters": dict(parameters)}
        path = f"/models/{_segment(model_id)}/train"
        reply = await self._call("PUT", path, json=body, dry_run=dry_run)
        if reply.dry:
            return TrainResult(None, None, reply.cost())
        return TrainResult(reply.get("job", _JOB), reply.get("model", _MODEL), reply.cost())

    # --- collections and captions ---------------------------------------------------------------

    async def create_collection(self, name: str) -> Collection:
        """A new, empty collection."""
        reply = await self._call("POST", "/collections", json={"name": name})
        return reply.get("collection", _COLLECTION)

    async def add_to_collection(self, collection_id: str, asset_ids: Sequence[str]) -> Collection:
        """Add assets, at most 49 per request; returns the collection after the last batch."""
        path = f"/collections/{_segment(collection_id)}"
        if not asset_ids:
            return (await self._call("GET", path)).get("collection", _COLLECTION)
        for start in range(0, len(asset_ids), COLLECTION_BATCH):
            batch = list(asset_ids[start : start + COLLECTION_BATCH])
            reply = await self._call("PUT", f"{path}/assets", json={"assetIds": batch})
        return reply.get("collection", _COLLECTION)

    async def caption(
        self, images: Sequence[str], *, details_level: str | None = None, dry_run: DryRun = False
    ) -> CaptionResult:
        """Caption images (asset ids or data URLs), in order; synchronous."""
        body: dict[str, Any] = {"images": list(images)}
        if details_level is not None:
            body["detailsLevel"] = details_level
        reply = await self._call("POST", "/generate/caption", json=body, dry_run=dry_run)
        level = reply.body.get("detailsLevel")
        level = level if isinstance(level, str) else None
        if reply.dry:
            return CaptionResult([], None, level, reply.cost())
        captions = reply.get("captions", _CAPTIONS)
        return CaptionResult(captions, reply.get("job", _JOB), level, reply.cost())

    # --- downloads ------------------------------------------------------------------------------

    @asynccontextmanager
    async def download(self, url: str) -> AsyncIterator[httpx.Response]:
        """Stream a signed asset URL, without our Authorization; only http(s) redirects followed."""
        response = await self._open(url)
        try:
            yield response
        except httpx.RequestError as exc:  # raised while the caller reads the body
            failure = self._unreachable(exc, "GET", _display(response.url))
            # The download request carries no Authorization, so the hidden context is harmless.
            raise failure from None
        finally:
            await response.aclose()

    async def _open(self, url: str) -> httpx.Response:
        try:
            target: httpx.URL | None = httpx.URL(url)
        except httpx.InvalidURL:
            target = None
        if target is None or target.scheme not in _DOWNLOAD_SCHEMES:
            shown = _display(target) if target else "<unparseable URL>"
            raise ApiError("refusing to download: only http and https URLs", method="GET", path=shown)
        for _hop in range(_MAX_REDIRECTS + 1):
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            request = self._http.build_request("GET", target, headers=headers)
            response = await self._send(request, "GET", _display(target), download=True)
            if not response.is_redirect:
                return response
            await response.aclose()
            status, location = response.status_code, response.headers["location"]
            try:
                target = target.join(location)
            except httpx.InvalidURL:
                target = None
            if target is None or target.scheme not in _DOWNLOAD_SCHEMES:
                where = _display(response.url)
                reason = "redirected to a URL that is not http or https; refused"
                raise ApiRejected(status, reason, method="GET", path=where)
        where = _display(target)
        raise ApiRejected(status, f"more than {_MAX_REDIRECTS} redirects", method="GET", path=where)

    # --- the seam -------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        dry_run: DryRun = False,
    ) -> _Reply:
        """One API request with auth, answered by a 2xx JSON object (or an `ApiError`)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if (dry := _dry_run_param(dry_run)) is not None:
            query["dryRun"] = dry
        if self._project_id:
            query["projectId"] = self._project_id
        headers = {"Authorization": self._authorization}  # built per request, never a default
        request = self._http.build_request(method, path, params=query, json=json, headers=headers)
        response = await self._send(request, method, path)
        reply = _Reply(method, path, response.status_code, {})
        try:
            body = response.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            body = None
        if not isinstance(body, dict):
            raise reply.malformed("the body is not a JSON object")
        return _Reply(method, path, response.status_code, body)

    async def _send(
        self, request: httpx.Request, method: str, path: str, *, download: bool = False
    ) -> httpx.Response:
        """Send: the one place where httpx errors become ours.

        Every failure is raised outside the `except` that caught it, so the httpx exception (which
        holds the request and its Authorization header) is neither the cause nor the context of
        ours. Messages use the method and path only: never the URL's query, never headers.
        """
        try:
            response = await self._http.send(request, stream=download)
        except httpx.RequestError as exc:  # transport errors, DecodingError, TooManyRedirects
            failure: ApiError = self._unreachable(exc, method, path)
        else:
            if response.is_success or (download and response.is_redirect):
                return response
            content = response.content if not download else await _read_quietly(response)
            failure = self._status_error(response, content, method, path, download=download)
        raise failure

    def _unreachable(self, exc: httpx.RequestError, method: str, path: str) -> ApiUnreachable:
        sent = not isinstance(exc, _NOT_SENT)
        detail = self._redact(" ".join(str(exc).split()))[:_REASON_LIMIT]
        what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        if sent:
            message = f"no answer ({what}); the server may have received the request"
        else:
            message = f"could not send ({what}); check the network and SCENARIO_BASE_URL"
        return ApiUnreachable(message, method=method, path=path, maybe_sent=sent)

    def _status_error(
        self, response: httpx.Response, content: bytes, method: str, path: str, *, download: bool
    ) -> ApiStatusError:
        status = response.status_code
        reason, hint, details = _error_fields(content)
        reason = self._redact(reason or response.reason_phrase)
        hint = self._redact(hint)
        retry_after = parse_retry_after(response.headers, now=self._now())
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        if should_retry == "true" or (
            should_retry != "false" and (status in _TRANSIENT_STATUSES or status >= 500)
        ):
            return ApiTransient(
                status, reason, method=method, path=path, hint=hint, details=details,
                retry_after=retry_after,
            )  # fmt: skip
        if status in (401, 403) and not download:
            return ApiAuthError(
                status, reason, method=method, path=path, details=details,
                retry_after=retry_after, **({"hint": hint} if hint else {}),
            )  # fmt: skip
        if status in (401, 403, 404, 410) and download:
            hint = hint or "the signed URL may have expired: fetch the asset again for a fresh one"
        return ApiRejected(
            status, reason, method=method, path=path, hint=hint, details=details,
            retry_after=retry_after,
        )  # fmt: skip

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text


async def _read_quietly(response: httpx.Response) -> bytes:
    """An error response's body, or nothing if it cannot be read: the status says enough."""
    with contextlib.suppress(httpx.RequestError):
        await response.aread()
        return response.content
    await response.aclose()
    return b""


def _error_fields(content: bytes) -> tuple[str, str, dict[str, Any]]:
    """reason, hint and details from an error body; the SDK types no error body, so be liberal."""
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    reason = next(
        (v for k in ("reason", "message", "error", "detail") if isinstance(v := body.get(k), str)),
        "",
    )
    if not reason:
        reason = " ".join(content.decode("utf-8", "replace").split())
    if len(reason) > _REASON_LIMIT:
        reason = reason[:_REASON_LIMIT] + "…"
    hint = body.get("hint")
    details = body.get("details")
    return reason, hint if isinstance(hint, str) else "", details if isinstance(details, dict) else {}
