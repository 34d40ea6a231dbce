"""Routes for assets and collections: upload, read, list, bulk read, delete, download, group.

Every asset answer carries a fresh signed `url` (files.py). Lists page like the real API
(scenario-api.md §5.2, §5.6): cursor tokens, filters applied after the page is cut.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.emulator import render
from pipeline.emulator.files import signed_url
from pipeline.emulator.records import AssetRecord, CollectionRecord
from pipeline.emulator.schema import decode_image
from pipeline.emulator.wire import (
    asset_json,
    bad_request,
    collection_json,
    json_body,
    not_found,
    page_size,
    paginate,
    parse_iso,
)

if TYPE_CHECKING:
    from pipeline.emulator.app import Emulator

MAX_COLLECTION_CHANGE = 49
_TARGETS = "png, jpeg, jpg, webp"


def _ids(body: dict[str, Any], field: str, *, limit: int | None = None) -> list[str]:
    value = body.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f'Missing or invalid "{field}": expected an array of ids')
    if limit is not None and len(value) > limit:
        raise bad_request(f'Too many "{field}": {len(value)} given, at most {limit} per call')
    return value


def routes(emu: Emulator) -> list[Route]:
    """The asset and collection routes of `emu`."""
    store = emu.store

    def shown(request: Request, asset: AssetRecord) -> dict[str, Any]:
        store.content(asset)
        return asset_json(asset, signed_url(emu, request, asset))

    def collection(collection_id: str) -> CollectionRecord:
        found = store.collections.get(collection_id)
        if found is None:
            raise not_found("collection", collection_id)
        return found

    async def upload(request: Request) -> Response:
        body = await json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request('Missing required field "name" (the file name)')
        image = body.get("image")
        if not isinstance(image, str) or not image:
            raise bad_request(
                'Missing field "image": base64 image data',
                hint="the emulator does not render canvas; send the image itself",
            )
        data, facts = decode_image(image, 'Invalid "image"', raw_base64=True)
        emu.stats.record_upload(data)
        collection_ids = _ids(body, "collectionIds") if "collectionIds" in body else []
        targets = [collection(i) for i in collection_ids]
        asset = store.upload(
            data,
            facts,
            name,
            hidden=bool(body.get("hide", False)),
            collection_ids=collection_ids,
            parent_id=body.get("parentId"),
        )
        for target in targets:
            _link(emu, target, [asset.id], add=True)
        return JSONResponse({"asset": shown(request, asset)})

    async def get_asset(request: Request) -> Response:
        asset = store.asset(request.path_params["assetId"])
        return JSONResponse({"asset": shown(request, asset)})

    async def list_assets(request: Request) -> Response:
        query = request.query_params
        size = page_size(request, default=50, maximum=100)
        sort_by = query.get("sortBy", "createdAt")
        direction = query.get("sortDirection", "desc")
        if sort_by not in ("createdAt", "updatedAt") or direction not in ("asc", "desc"):
            raise bad_request("sortBy is createdAt or updatedAt; sortDirection is asc or desc")
        bounds = {}
        for name in ("createdAfter", "createdBefore", "updatedAfter", "updatedBefore"):
            if name in query:
                if not name.startswith(sort_by.removesuffix("At")):
                    raise bad_request(f"{name} needs sortBy={name[:7]}At")
                bounds[name] = parse_iso(name, query[name])
        types = set(query["types"].split(",")) if query.get("types") else None
        types = types or ({query["type"]} if query.get("type") else None)
        tags = set(query["tags"].split(",")) if query.get("tags") else set()
        deleted = query.get("deleted") == "true"
        store.settle_all()
        sign = -1 if direction == "desc" else 1

        def when(asset: AssetRecord) -> float:
            return asset.created if sort_by == "createdAt" else max(asset.updated, asset.created)

        def key(asset: AssetRecord) -> list[Any]:
            return [sign * when(asset), asset.id]

        def keep(asset: AssetRecord) -> bool:
            t, meta = when(asset), asset.metadata
            return (
                (asset.deleted is not None) == deleted
                and (types is None or meta.get("type") in types)
                and tags <= set(asset.tags)
                and query.get("collectionId", "") in ("", *asset.collection_ids)
                and query.get("modelId", meta.get("modelId")) == meta.get("modelId")
                and query.get("inferenceId", asset.job_id) == asset.job_id
                and query.get("parentAssetId", meta.get("parentId")) == meta.get("parentId")
                and all(t > v if name.endswith("After") else t < v for name, v in bounds.items())
            )

        candidates = [a for a in store.assets.values() if not a.hidden]
        page, token = paginate(
            sorted(candidates, key=key),
            key=key,
            size=size,
            token=query.get("paginationToken"),
            keep=keep,
        )
        result: dict[str, Any] = {"assets": [shown(request, a) for a in page]}
        if token:
            result["nextPaginationToken"] = token
        return JSONResponse(result)

    async def get_bulk(request: Request) -> Response:
        ids = _ids(await json_body(request), "assetIds", limit=100)
        store.settle_all()
        found = [store.assets[i] for i in ids if i in store.assets]
        live = [a for a in found if a.deleted is None]
        return JSONResponse({"assets": [shown(request, a) for a in live]})

    async def delete_assets(request: Request) -> Response:
        ids = _ids(await json_body(request), "assetIds")
        now = emu.clock()
        for asset_id in ids:
            asset = store.asset(asset_id)
            asset.deleted = asset.updated = now
            store.save("assets", asset)
        return JSONResponse({})

    async def download(request: Request) -> Response:
        asset = store.asset(request.path_params["assetId"])
        body = await json_body(request)
        target = str(body.get("targetFormat") or asset.format).lower()
        if not render.convertible(target):
            raise bad_request(
                f"targetFormat {target} is not available in the emulator", hint=f"use {_TARGETS}"
            )
        fmt = "jpeg" if target == "jpg" else target
        mime = asset.mime_type if fmt == asset.format else f"image/{fmt}"
        return JSONResponse({"url": signed_url(emu, request, asset, fmt), "mimeType": mime})

    async def create_collection(request: Request) -> Response:
        body = await json_body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request('Missing required field "name"')
        now = emu.clock()
        record = CollectionRecord(store.new_id("collection"), name, now, now)
        store.collections[record.id] = record
        store.save("collections", record)
        return JSONResponse({"collection": collection_json(record)})

    async def list_collections(request: Request) -> Response:
        size = page_size(request, default=10, maximum=100)

        def key(record: CollectionRecord) -> list[Any]:
            return [-record.created, record.id]

        ordered = sorted(store.collections.values(), key=key)
        token = request.query_params.get("paginationToken")
        page, next_token = paginate(ordered, key=key, size=size, token=token)
        result: dict[str, Any] = {"collections": [collection_json(c) for c in page]}
        if next_token:
            result["nextPaginationToken"] = next_token
        return JSONResponse(result)

    async def one_collection(request: Request) -> Response:
        record = collection(request.path_params["collectionId"])
        if request.method == "DELETE":
            _link(emu, record, list(record.asset_ids), add=False)
            del store.collections[record.id]
            store.forget("collections", record.id)
            return JSONResponse({})
        if request.method == "PUT":
            body = await json_body(request)
            if isinstance(body.get("name"), str) and body["name"]:
                record.name = body["name"]
                record.updated = emu.clock()
                store.save("collections", record)
        return JSONResponse({"collection": collection_json(record)})

    async def collection_assets(request: Request) -> Response:
        record = collection(request.path_params["collectionId"])
        ids = _ids(await json_body(request), "assetIds", limit=MAX_COLLECTION_CHANGE)
        for asset_id in ids:
            store.asset(asset_id)
        _link(emu, record, ids, add=request.method == "PUT")
        return JSONResponse({"collection": collection_json(record)})

    return [
        Route("/v1/assets", list_assets, methods=["GET"]),
        Route("/v1/assets", upload, methods=["POST"]),
        Route("/v1/assets", delete_assets, methods=["DELETE"]),
        Route("/v1/assets/get-bulk", get_bulk, methods=["POST"]),
        Route("/v1/assets/{assetId}", get_asset, methods=["GET"]),
        Route("/v1/assets/{assetId}/download", download, methods=["POST"]),
        Route("/v1/collections", list_collections, methods=["GET"]),
        Route("/v1/collections", create_collection, methods=["POST"]),
        Route("/v1/collections/{collectionId}", one_collection, methods=["GET", "PUT", "DELETE"]),
        Route(
            "/v1/collections/{collectionId}/assets", collection_assets, methods=["PUT", "DELETE"]
        ),
    ]


def _link(emu: Emulator, record: CollectionRecord, asset_ids: list[str], *, add: bool) -> None:
    """Add or remove assets, keeping both sides (collection and asset) in step."""
    for asset_id in asset_ids:
        asset = emu.store.assets[asset_id]
        if add and asset_id not in record.asset_ids:
            record.asset_ids.append(asset_id)
            asset.collection_ids.append(record.id)
        elif not add and asset_id in record.asset_ids:
            record.asset_ids.remove(asset_id)
            asset.collection_ids.remove(record.id)
        emu.store.save("assets", asset)
    record.updated = emu.clock()
    emu.store.save("collections", record)
