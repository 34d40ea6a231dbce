"""Wire format: error bodies, dates, cursor paging and the JSON shape of each record.

Follows scenario-api.md field for field (camelCase, every required field always sent). It reads
records but never changes them; which records exist is state.py's business.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse

from pipeline.emulator.records import AssetRecord, CollectionRecord, JobRecord

T = TypeVar("T")
OWNER_ID = "team_emulatorLocalTeam0000"
AUTHOR_ID = "user_emulatorLocalUser0000"
# Statuses whose errors must not be retried (scenario-api.md §2, §8).
_NO_RETRY = frozenset({400, 401, 403, 404, 422})
EDIT_CAPABILITIES = ["PROMPT_EDITING", "REFRAME", "REMOVE_BACKGROUND", "UPSCALE"]


class ApiProblem(Exception):
    """An error answer: status, `reason`, and optionally `hint`, `details` and headers."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        hint: str = "",
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.hint = hint
        self.details = details
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON answer, with `x-should-retry: false` where retrying cannot help."""
        body: dict[str, Any] = {"reason": self.reason}
        if self.hint:
            body["hint"] = self.hint
        if self.details is not None:
            body["details"] = self.details
        headers = dict(self.headers)
        if self.status in _NO_RETRY:
            headers["x-should-retry"] = "false"
        return JSONResponse(body, status_code=self.status, headers=headers)


def bad_request(reason: str, *, hint: str = "") -> ApiProblem:
    """A 400 for a request the emulator will not process as sent."""
    return ApiProblem(400, reason, hint=hint)


def not_found(kind: str, ident: str) -> ApiProblem:
    """A 404 naming the missing resource."""
    return ApiProblem(404, f"{kind} {ident} not found", hint=f"check the {kind} id")


def iso(t: float) -> str:
    """Epoch seconds as the API's ISO form, e.g. 2023-02-03T11:19:41.579Z."""
    moment = datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(name: str, value: str) -> float:
    """An ISO 8601 query value as epoch seconds; 400 naming the parameter if it is not one."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"Invalid {name} {value!r}: expected an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def optional_iso(query: Mapping[str, str], name: str) -> float | None:
    """A date query parameter as epoch seconds, or None when absent."""
    return parse_iso(name, query[name]) if name in query else None


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 when it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"Invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object")
    return body


def page_size(request: Request, *, default: int, maximum: int) -> int:
    """The `pageSize` query parameter, checked against the endpoint's bounds."""
    raw = request.query_params.get("pageSize")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f"Invalid pageSize {raw!r}: expected an integer") from None
    if not 1 <= size <= maximum:
        raise bad_request(f"Invalid pageSize {size}: must be between 1 and {maximum}")
    return size


def paginate(
    items: Sequence[T],
    *,
    key: Callable[[T], list[Any]],
    size: int,
    token: str | None,
    keep: Callable[[T], bool] = lambda _: True,
) -> tuple[list[T], str | None]:
    """One page of `items` (already in order) after the cursor `token`.

    Like the real API, filters apply after the page is cut, so a page can be short or empty while
    a `nextPaginationToken` still follows. The token is the sort key of the last item examined.
    """
    start = 0
    if token:
        after = _decode_token(token)
        start = next((i for i, item in enumerate(items) if key(item) > after), len(items))
    window = list(items[start : start + size])
    more = start + size < len(items)
    next_token = _encode_token(key(window[-1])) if more and window else None
    return [item for item in window if keep(item)], next_token


def _encode_token(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _decode_token(token: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise bad_request(
            "Invalid paginationToken", hint="send back a nextPaginationToken"
        ) from None
    if not isinstance(key, list):
        raise bad_request("Invalid paginationToken", hint="send back a nextPaginationToken")
    return key


def job_json(job: JobRecord, now: float) -> dict[str, Any]:
    """A Job (scenario-api.md §3.1) as it stands at `now`."""
    snap = job.snapshot(now)
    metadata: dict[str, Any] = {"input": job.inputs}
    if snap.status == "success" and job.asset_ids:
        metadata["assetIds"] = list(job.asset_ids)
    if snap.status == "failure":
        metadata["error"] = job.error
        metadata["hint"] = job.hint
    if job.output_model_id:
        metadata["outputModelId"] = job.output_model_id
    if snap.status == "success" and job.output is not None:
        metadata["output"] = job.output
    return {
        "jobId": job.id,
        "jobType": job.job_type,
        "status": snap.status,
        "progress": snap.progress,
        "statusHistory": [{"status": s, "date": iso(t)} for s, t in snap.history],
        "metadata": metadata,
        "createdAt": iso(job.created),
        "updatedAt": iso(snap.updated),
        "authorId": AUTHOR_ID,
        "ownerId": OWNER_ID,
        "billing": {"cuCost": job.cost, "cuDiscount": 0},
    }


def asset_json(asset: AssetRecord, url: str) -> dict[str, Any]:
    """An Asset (scenario-api.md §3.4); `url` is the signed download link."""
    body: dict[str, Any] = {
        "id": asset.id,
        "url": url,
        "mimeType": asset.mime_type,
        "kind": "image",
        "status": "success",
        "source": asset.source,
        "privacy": "private",
        "metadata": asset.metadata,
        "properties": {
            "size": asset.size,
            "width": asset.width,
            "height": asset.height,
            "format": asset.format,
        },
        "authorId": AUTHOR_ID,
        "ownerId": OWNER_ID,
        "collectionIds": list(asset.collection_ids),
        "tags": list(asset.tags),
        "editCapabilities": EDIT_CAPABILITIES,
        "createdAt": iso(asset.created),
        "updatedAt": iso(max(asset.updated, asset.created)),
        "isHidden": asset.hidden,
    }
    if asset.output_index is not None:
        body["outputIndex"] = asset.output_index
    if asset.deleted is not None:
        body["deletedAt"] = iso(asset.deleted)
    return body


def collection_json(collection: CollectionRecord) -> dict[str, Any]:
    """A Collection (scenario-api.md §3.6)."""
    assets, models = len(collection.asset_ids), len(collection.model_ids)
    return {
        "id": collection.id,
        "name": collection.name,
        "ownerId": OWNER_ID,
        "assetCount": assets,
        "modelCount": models,
        "itemCount": assets + models,
        "createdAt": iso(collection.created),
        "updatedAt": iso(collection.updated),
    }


def cost_envelope(cost: float, action: str) -> dict[str, Any]:
    """creativeUnitsCost/Discount and costDetails (scenario-api.md §3.3)."""
    return {
        "creativeUnitsCost": cost,
        "creativeUnitsDiscount": 0,
        "costDetails": {action: cost} if cost else {},
    }
