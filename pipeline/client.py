"""The async Scenario API client, and the one seam where httpx errors become ours (`_send`).

Owns the requests (paths, queries, bodies, auth, downloads) and the translation of transport
failures and error statuses into the `ApiError` tree. It never retries and never sleeps: the
scheduler does both, guided by `transient`, `maybe_sent` and `retry_after`. The API's pure
conventions (credentials, Retry-After, reading bodies) live in protocol.py, the shapes in wire.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from time import time
from typing import Any, TypeVar

import httpx

from pipeline import __version__, wire
from pipeline.credentials import Credentials
from pipeline.errors import (
    ApiAuthError,
    ApiError,
    ApiRejected,
    ApiStatusError,
    ApiTransient,
    ApiUnreachable,
)
from pipeline.protocol import (
    DEFAULT_BASE_URL,
    REASON_LIMIT,
    DryRun,
    Reply,
    base_url_from_env,
    data_url,
    display_url,
    dry_run_param,
    error_fields,
    parse_retry_after,
    path_segment,
)

_Item = TypeVar("_Item", list[wire.Job], list[wire.Asset])

__all__ = ["DEFAULT_BASE_URL", "ApiClient", "Credentials", "DryRun", "base_url_from_env"]

DEFAULT_TIMEOUT = httpx.Timeout(60, connect=5)
USER_AGENT = f"pipeline/{__version__}"
COLLECTION_BATCH = 49  # the most asset ids PUT /collections/{id}/assets takes at once
TRAINING_BATCH = 10  # the most asset ids POST /models/{id}/training-images takes at once
# Failures that happen before a byte of the request left: sending again is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_TRANSIENT_STATUSES = frozenset({408, 409, 429})
_MAX_REDIRECTS = 5
_DOWNLOAD_SCHEMES = frozenset({"http", "https"})
_EXPIRED_HINT = "the signed URL may have expired: get the asset again for a fresh one"


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
        self._project_id = project_id
        self._now = now
        token = credentials.basic_token()
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

    async def generate(
        self, model_id: str, body: Mapping[str, Any], *, dry_run: DryRun = False
    ) -> wire.GenerateResult:
        """Start a job on a model; a dry run (269) prices it and returns no job."""
        path = f"/generate/custom/{path_segment(model_id)}"
        reply = await self._call("POST", path, json=dict(body), dry_run=dry_run)
        return wire.GenerateResult(None if reply.dry else reply.get("job", wire.Job), reply.cost())

    async def get_job(self, job_id: str) -> wire.Job:
        """The job as it is now."""
        return (await self._call("GET", f"/jobs/{path_segment(job_id)}")).get("job", wire.Job)

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        types: Sequence[str] | None = None,
        created_after: str | None = None,
        updated_after: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[wire.Job]:
        """Every matching job, page after page while a token follows, even after an empty page."""
        token: str | None = None
        while True:
            jobs, token = await self.list_jobs_page(
                token,
                status=status,
                types=types,
                created_after=created_after,
                updated_after=updated_after,
                page_size=page_size,
            )
            for job in jobs:
                yield job
            if token is None:
                return

    async def list_jobs_page(
        self,
        token: str | None = None,
        *,
        status: str | None = None,
        types: Sequence[str] | None = None,
        created_after: str | None = None,
        updated_after: str | None = None,
        page_size: int = 100,
    ) -> tuple[list[wire.Job], str | None]:
        """One page of jobs and the token of the next (None after the last page).

        For a caller that retries page by page: a failure resumes at the same token.
        """
        query: dict[str, Any] = {
            "pageSize": page_size,
            "status": status,
            "types": ",".join(types) if types else None,
            "createdAfter": created_after,
            "updatedAfter": updated_after,
            "paginationToken": token,
        }
        return await self._page("/jobs", "jobs", list[wire.Job], query, token)

    async def list_assets_page(
        self,
        token: str | None = None,
        *,
        types: Sequence[str] | None = None,
        created_after: str | None = None,
        page_size: int = 100,
    ) -> tuple[list[wire.Asset], str | None]:
        """One page of assets, newest first (`created_after` bounds them), and the next token."""
        query: dict[str, Any] = {
            "pageSize": page_size,
            "types": ",".join(types) if types else None,
            "sortBy": "createdAt",
            "sortDirection": "desc",
            "createdAfter": created_after,
            "paginationToken": token,
        }
        return await self._page("/assets", "assets", list[wire.Asset], query, token)

    async def _page(
        self, path: str, key: str, shape: type[_Item], query: dict[str, Any], token: str | None
    ) -> tuple[_Item, str | None]:
        """One page of a cursor list (scenario-api.md section 6) and the next page's token."""
        reply = await self._call("GET", path, params=query)
        found = reply.get(key, shape)
        following = reply.body.get("nextPaginationToken")
        if not following:
            return found, None
        if not isinstance(following, str) or following == token:
            raise reply.malformed(f"unusable nextPaginationToken {following!r}")
        return found, following

    async def cancel_job(self, job_id: str) -> wire.Job:
        """Ask for a job to be canceled; the job comes back as the server now sees it."""
        path = f"/jobs/{path_segment(job_id)}/action"
        return (await self._call("POST", path, json={"action": "cancel"})).get("job", wire.Job)

    async def get_asset(self, asset_id: str) -> wire.Asset:
        """One asset, with a fresh signed `url`."""
        reply = await self._call("GET", f"/assets/{path_segment(asset_id)}")
        return reply.get("asset", wire.Asset)

    async def get_assets(self, asset_ids: Sequence[str]) -> list[wire.Asset]:
        """Several assets in one request."""
        if not asset_ids:
            return []
        reply = await self._call("POST", "/assets/get-bulk", json={"assetIds": list(asset_ids)})
        return reply.get("assets", list[wire.Asset])

    async def upload_asset(
        self,
        name: str,
        data: bytes,
        *,
        mime_type: str = "image/png",
        collection_ids: Sequence[str] = (),
    ) -> wire.Asset:
        """Store an image (under 6 MB) as an asset, sent as a base64 data URL."""
        body: dict[str, Any] = {"name": name, "image": data_url(data, mime_type)}
        if collection_ids:
            body["collectionIds"] = list(collection_ids)
        return (await self._call("POST", "/assets", json=body)).get("asset", wire.Asset)

    async def get_model(self, model_id: str) -> wire.Model:
        """A model, with its `inputs` schema."""
        reply = await self._call("GET", f"/models/{path_segment(model_id)}")
        return reply.get("model", wire.Model)

    async def create_model(
        self,
        *,
        name: str,
        type: str,
        short_description: str | None = None,
        collection_ids: Sequence[str] = (),
    ) -> wire.Model:
        """A new, empty model (status `new`) ready for training images."""
        body: dict[str, Any] = {"name": name, "type": type}
        if short_description is not None:
            body["shortDescription"] = short_description
        if collection_ids:
            body["collectionIds"] = list(collection_ids)
        return (await self._call("POST", "/models", json=body)).get("model", wire.Model)

    async def add_training_image(
        self,
        model_id: str,
        *,
        data: bytes | None = None,
        name: str | None = None,
        asset_id: str | None = None,
        preset: str | None = None,
        mime_type: str = "image/png",
    ) -> wire.TrainingImage:
        """Add one image to a model's training set: raw bytes, or an existing asset."""
        if (data is None) == (asset_id is None):
            raise ValueError("give exactly one of data and asset_id")
        body: dict[str, Any]
        if asset_id is not None:
            body = {"assetId": asset_id}
        else:
            assert data is not None
            body = {"data": data_url(data, mime_type), "name": name or "image"}
        if preset is not None:
            body["preset"] = preset
        path = f"/models/{path_segment(model_id)}/training-images"
        return (await self._call("POST", path, json=body)).get("trainingImage", wire.TrainingImage)

    async def add_training_images(
        self, model_id: str, asset_ids: Sequence[str], *, preset: str | None = None
    ) -> wire.TrainingImage:
        """Add up to 10 existing assets to a model's training set in one request."""
        if not 1 <= len(asset_ids) <= TRAINING_BATCH:
            raise ValueError(f"1 to {TRAINING_BATCH} asset ids per request, got {len(asset_ids)}")
        body: dict[str, Any] = {"assetIds": list(asset_ids)}
        if preset is not None:
            body["preset"] = preset
        path = f"/models/{path_segment(model_id)}/training-images"
        return (await self._call("POST", path, json=body)).get("trainingImage", wire.TrainingImage)

    async def train(
        self,
        model_id: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        dry_run: DryRun = False,
        images_count: int | None = None,
    ) -> wire.TrainResult:
        """Start training; a dry run (269) prices it and returns no job and no model.

        `images_count`: on a dry run, price as if the model held that many images."""
        body = {} if parameters is None else {"parameters": dict(parameters)}
        path = f"/models/{path_segment(model_id)}/train"
        query = {"trainingImagesCount": images_count} if images_count is not None else None
        reply = await self._call("PUT", path, params=query, json=body, dry_run=dry_run)
        if reply.dry:
            return wire.TrainResult(None, None, reply.cost())
        return wire.TrainResult(
            reply.get("job", wire.Job), reply.get("model", wire.Model), reply.cost()
        )

    async def create_collection(self, name: str) -> wire.Collection:
        """A new, empty collection."""
        reply = await self._call("POST", "/collections", json={"name": name})
        return reply.get("collection", wire.Collection)

    async def add_to_collection(
        self, collection_id: str, asset_ids: Sequence[str]
    ) -> wire.Collection:
        """Add assets, at most 49 per request; returns the collection after the last batch
        (with no assets: the collection as it is, a GET)."""
        return await self._collection_assets("PUT", collection_id, asset_ids)

    async def remove_from_collection(
        self, collection_id: str, asset_ids: Sequence[str]
    ) -> wire.Collection:
        """Take assets out of a collection, at most 49 per request."""
        return await self._collection_assets("DELETE", collection_id, asset_ids)

    async def _collection_assets(
        self, method: str, collection_id: str, asset_ids: Sequence[str]
    ) -> wire.Collection:
        path = f"/collections/{path_segment(collection_id)}"
        if not asset_ids:
            return (await self._call("GET", path)).get("collection", wire.Collection)
        for start in range(0, len(asset_ids), COLLECTION_BATCH):
            batch = list(asset_ids[start : start + COLLECTION_BATCH])
            reply = await self._call(method, f"{path}/assets", json={"assetIds": batch})
        return reply.get("collection", wire.Collection)

    async def caption(
        self, images: Sequence[str], *, details_level: str | None = None, dry_run: DryRun = False
    ) -> wire.CaptionResult:
        """Caption images (asset ids or data URLs), in order; synchronous."""
        body: dict[str, Any] = {"images": list(images)}
        if details_level is not None:
            body["detailsLevel"] = details_level
        reply = await self._call("POST", "/generate/caption", json=body, dry_run=dry_run)
        level = reply.body.get("detailsLevel")
        level = level if isinstance(level, str) else None
        if reply.dry:
            return wire.CaptionResult([], None, level, reply.cost())
        captions = reply.get("captions", list[str])
        return wire.CaptionResult(captions, reply.get("job", wire.Job), level, reply.cost())

    # --- downloads ------------------------------------------------------------------------------

    @asynccontextmanager
    async def download(self, url: str) -> AsyncIterator[httpx.Response]:
        """Stream a signed asset URL, without our Authorization; only http(s) redirects followed."""
        response = await self._open(url)
        try:
            yield response
        except httpx.RequestError as exc:  # raised while the caller reads the body
            failure = self._unreachable(exc, "GET", display_url(response.url))
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
            shown = display_url(target) if target else "<unparseable URL>"
            raise ApiError("refused: only http(s) URLs are fetched", method="GET", path=shown)
        for _hop in range(_MAX_REDIRECTS + 1):
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            request = self._http.build_request("GET", target, headers=headers)
            response = await self._send(request, "GET", display_url(target), download=True)
            if not response.is_redirect:
                return response
            await response.aclose()
            status, location = response.status_code, response.headers["location"]
            try:
                target = target.join(location)
            except httpx.InvalidURL:
                target = None
            if target is None or target.scheme not in _DOWNLOAD_SCHEMES:
                where = display_url(response.url)
                reason = "redirected to a URL that is not http or https; refused"
                raise ApiRejected(status, reason, method="GET", path=where)
        where = display_url(target)
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
    ) -> Reply:
        """One API request with auth, answered by a 2xx JSON object (or an `ApiError`)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if (dry := dry_run_param(dry_run)) is not None:
            query["dryRun"] = dry
        if self._project_id:
            query["projectId"] = self._project_id
        headers = {"Authorization": self._authorization}  # built per request, never a default
        request = self._http.build_request(method, path, params=query, json=json, headers=headers)
        response = await self._send(request, method, path)
        return Reply.read(method, path, response.status_code, response.content)

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
        except httpx.InvalidURL:  # a redirect to something httpx cannot even parse (data:, ...)
            reason = "redirected to a URL that is not http or https; refused"
            failure = ApiError(reason, method=method, path=path)
        else:
            if response.is_success or (download and response.is_redirect):
                return response
            content = response.content if not download else await _read_quietly(response)
            failure = self._status_error(response, content, method, path, download=download)
        raise failure

    def _unreachable(self, exc: httpx.RequestError, method: str, path: str) -> ApiUnreachable:
        sent = not isinstance(exc, _NOT_SENT)
        detail = self._redact(" ".join(str(exc).split()))[:REASON_LIMIT]
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
        reason, hint, details = error_fields(content)
        reason = self._redact(reason or response.reason_phrase)
        hint = self._redact(hint)
        retry_after = parse_retry_after(response.headers, now=self._now())
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        cls: type[ApiStatusError] = ApiRejected
        if should_retry == "true" or (
            should_retry != "false" and (status in _TRANSIENT_STATUSES or status >= 500)
        ):
            cls = ApiTransient
        elif download and status in (401, 403, 404, 410):
            hint = hint or _EXPIRED_HINT  # object stores refuse an expired signature this way
        elif status in (401, 403):
            cls = ApiAuthError
        options: dict[str, Any] = {"hint": hint} if hint else {}  # ApiAuthError has its own default
        return cls(
            status,
            reason,
            method=method,
            path=path,
            details=details,
            retry_after=retry_after,
            **options,
        )

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
