"""Assets and collections: upload, read, list, bulk, delete, signed downloads, grouping."""

from __future__ import annotations

import base64
import io
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from pipeline.emulator import Emulator
from tests.emulator.support import (
    FakeClock,
    MakeEmulator,
    client_for,
    data_url,
    finish,
    generate,
    png,
    upload,
)


async def test_upload_accepts_a_data_url_and_reports_the_image(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/assets", json={"name": "potion.png", "image": data_url(png(40, 30, (1, 2, 3, 128)))}
    )
    assert response.status_code == 200
    asset = response.json()["asset"]
    assert asset["id"].startswith("asset_")
    assert asset["source"] == "uploaded"
    assert asset["metadata"] == {"type": "uploaded", "kind": "image", "name": "potion.png"}
    assert asset["mimeType"] == "image/png"
    assert asset["properties"]["width"] == 40
    assert asset["properties"]["height"] == 30
    for field in ("url", "kind", "status", "privacy", "authorId", "ownerId", "collectionIds"):
        assert field in asset
    for field in ("tags", "editCapabilities", "createdAt", "updatedAt"):
        assert field in asset


async def test_upload_keeps_the_format_of_the_file(client: httpx.AsyncClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    asset_id = await upload(client, buffer.getvalue(), name="photo.jpg")
    asset = (await client.get(f"/assets/{asset_id}")).json()["asset"]
    assert asset["mimeType"] == "image/jpeg"
    assert asset["properties"]["format"] == "jpeg"
    data = (await client.get(asset["url"])).content
    assert data == buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"image": data_url(png())}, 'Missing required field "name"'),
        ({"name": "a.png"}, 'Missing field "image"'),
        ({"name": "a.txt", "image": base64.b64encode(b"hello").decode()}, "not an image"),
        ({"name": "a.png", "image": "%%%"}, "base64 data is malformed"),
    ],
)
async def test_upload_rejects_what_is_not_an_image(
    client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    response = await client.post("/assets", json=body)
    assert response.status_code == 400
    assert reason in response.json()["reason"]


async def test_download_url_serves_the_bytes_without_api_auth(emu: Emulator) -> None:
    async with client_for(emu) as client:
        asset_id = await upload(client, png(9, 9))
        url = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
    assert url.startswith("http://emulator.local/_emulator/files/")
    async with client_for(emu, auth=None) as anonymous:
        response = await anonymous.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == png(9, 9)


async def test_expired_and_tampered_urls_are_refused(
    emu: Emulator, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    asset_id = await upload(client, png())
    url = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
    tampered = url.replace("signature=", "signature=0")
    assert (await client.get(tampered)).status_code == 403
    unsigned = url.split("?")[0]
    assert (await client.get(unsigned)).status_code == 403
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert expires == int(clock.now + emu.config.url_ttl)
    clock.now = expires + 1
    response = await client.get(url)
    assert response.status_code == 403
    assert "expired" in response.json()["reason"]
    assert response.headers["x-should-retry"] == "false"


async def test_url_ttl_is_configurable(make_emulator: MakeEmulator, clock: FakeClock) -> None:
    emu = make_emulator(url_ttl=10)
    async with client_for(emu) as client:
        asset_id = await upload(client, png())
        url = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
        clock.advance(11)
        assert (await client.get(url)).status_code == 403
        fresh = (await client.get(f"/assets/{asset_id}")).json()["asset"]["url"]
        assert (await client.get(fresh)).status_code == 200


async def test_download_endpoint_converts_formats(client: httpx.AsyncClient) -> None:
    asset_id = await upload(client, png(12, 6))
    same = (await client.post(f"/assets/{asset_id}/download", json={})).json()
    assert same["mimeType"] == "image/png"
    jpeg = (await client.post(f"/assets/{asset_id}/download", json={"targetFormat": "jpg"})).json()
    assert jpeg["mimeType"] == "image/jpeg"
    data = (await client.get(jpeg["url"])).content
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    refused = await client.post(f"/assets/{asset_id}/download", json={"targetFormat": "glb"})
    assert refused.status_code == 400


async def test_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/assets/asset_nope")).status_code == 404
    assert (await client.post("/assets/asset_nope/download", json={})).status_code == 404


async def test_get_bulk_skips_unknown_ids(client: httpx.AsyncClient) -> None:
    a = await upload(client, png())
    b = await upload(client, png(3, 3))
    body = (await client.post("/assets/get-bulk", json={"assetIds": [b, "asset_x", a]})).json()
    assert [asset["id"] for asset in body["assets"]] == [b, a]


async def test_lists_assets_with_paging_and_filters(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    uploads = []
    for _ in range(3):
        uploads.append(await upload(client, png()))
        clock.advance(1)
    job = await generate(client, numOutputs=2)
    done = await finish(client, clock, job["jobId"])
    generated = done["metadata"]["assetIds"]
    seen, token = [], None
    for _ in range(10):
        params: dict[str, Any] = {"pageSize": 2}
        if token:
            params["paginationToken"] = token
        body = (await client.get("/assets", params=params)).json()
        seen += [a["id"] for a in body["assets"]]
        token = body.get("nextPaginationToken")
        if not token:
            break
    assert seen[2:] == uploads[::-1]
    assert sorted(seen[:2]) == sorted(generated)
    by_job = (await client.get("/assets", params={"inferenceId": job["jobId"]})).json()["assets"]
    assert sorted(a["id"] for a in by_job) == sorted(generated)
    oldest = await client.get("/assets", params={"sortDirection": "asc", "type": "uploaded"})
    assert [a["id"] for a in oldest.json()["assets"]] == uploads


async def test_delete_hides_assets(client: httpx.AsyncClient) -> None:
    asset_id = await upload(client, png())
    response = await client.request("DELETE", "/assets", json={"assetIds": [asset_id]})
    assert response.status_code == 200
    assert (await client.get(f"/assets/{asset_id}")).status_code == 404
    assert (await client.get("/assets")).json()["assets"] == []
    deleted = (await client.get("/assets", params={"deleted": "true"})).json()["assets"]
    assert deleted[0]["id"] == asset_id
    assert "deletedAt" in deleted[0]


async def test_collections_group_assets(client: httpx.AsyncClient) -> None:
    created = await client.post("/collections", json={"name": "ui-icons"})
    collection = created.json()["collection"]
    assert collection["name"] == "ui-icons"
    assert (collection["assetCount"], collection["modelCount"], collection["itemCount"]) == (
        0,
        0,
        0,
    )
    cid = collection["id"]
    a, b = await upload(client, png()), await upload(client, png())
    added = await client.put(f"/collections/{cid}/assets", json={"assetIds": [a, b]})
    assert added.json()["collection"]["assetCount"] == 2
    asset = (await client.get(f"/assets/{a}")).json()["asset"]
    assert asset["collectionIds"] == [cid]
    listed = (await client.get("/assets", params={"collectionId": cid})).json()["assets"]
    assert len(listed) == 2
    removed = await client.request("DELETE", f"/collections/{cid}/assets", json={"assetIds": [a]})
    assert removed.json()["collection"]["itemCount"] == 1
    assert (await client.get(f"/collections/{cid}")).json()["collection"]["assetCount"] == 1


async def test_collections_take_at_most_49_assets_per_call(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/collections", json={"name": "x"})).json()["collection"]["id"]
    ids = [f"asset_{n}" for n in range(50)]
    response = await client.put(f"/collections/{cid}/assets", json={"assetIds": ids})
    assert response.status_code == 400
    assert "at most 49" in response.json()["reason"]


async def test_collections_list_ten_per_page_by_default(client: httpx.AsyncClient) -> None:
    for n in range(12):
        await client.post("/collections", json={"name": f"c{n}"})
    first = (await client.get("/collections")).json()
    assert len(first["collections"]) == 10
    second = (
        await client.get("/collections", params={"paginationToken": first["nextPaginationToken"]})
    ).json()
    assert len(second["collections"]) == 2
    assert "nextPaginationToken" not in second


async def test_unknown_collection_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/collections/collection_nope")).status_code == 404
