"""ApiClient against pytest-httpx: each call's request on the wire, each error class, and secrets.

Hermetic: no network, no sleeps. The wire facts checked here come from scenario-api.md.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from pipeline import __version__
from pipeline.client import ApiClient, Credentials
from pipeline.errors import (
    ApiAuthError,
    ApiError,
    ApiRejected,
    ApiTransient,
    ApiUnreachable,
)

BASE = "https://api.test/v1"
KEY, SECRET = "KEY-SENTINEL", "SECRET-SENTINEL"
TOKEN = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def job(job_id: str = "job_1", status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {
        "jobId": job_id,
        "jobType": "custom",
        "status": status,
        "progress": 0,
        "statusHistory": [{"status": status, "date": "2026-01-01T00:00:00.000Z"}],
        "metadata": {"input": {"prompt": "x"}},
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        **extra,
    }


def asset(asset_id: str = "asset_1") -> dict[str, Any]:
    return {
        "id": asset_id,
        "url": f"https://cdn.test/{asset_id}.png?sig=SIGNATURE",
        "mimeType": "image/png",
        "kind": "image",
        "status": "success",
        "source": "txt2img",
        "privacy": "private",
        "metadata": {"kind": "image", "type": "txt2img", "seed": "42"},
        "properties": {"size": 10, "width": 8, "height": 8},
        "authorId": "a",
        "ownerId": "o",
        "collectionIds": [],
        "tags": [],
        "editCapabilities": [],
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }


def model(model_id: str = "model_1", **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "status": "new",
        "type": "flux.1-lora",
        "custom": False,
        "capabilities": ["txt2img"],
        "privacy": "private",
        "source": "scenario",
        "collectionIds": [],
        "tags": [],
        "exampleAssetIds": [],
        "trainingImagesNumber": 0,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        **extra,
    }


def collection(count: int = 0) -> dict[str, Any]:
    return {
        "id": "col_1",
        "name": "icons",
        "ownerId": "o",
        "assetCount": count,
        "modelCount": 0,
        "itemCount": count,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }


@pytest.fixture
async def client() -> AsyncIterator[ApiClient]:
    async with ApiClient(
        base_url=BASE, credentials=Credentials(KEY, SECRET), now=lambda: NOW
    ) as api:
        yield api


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --- every call, as it goes on the wire ---------------------------------------------------------


async def test_generate_posts_the_body_with_basic_auth(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"job": job(), "creativeUnitsCost": 5, "costDetails": {"a": 5}})
    result = await client.generate("model_flux", {"prompt": "sword", "width": 512})
    request = httpx_mock.get_requests()[0]
    assert (request.method, request.url) == ("POST", f"{BASE}/generate/custom/model_flux")
    assert sent_json(request) == {"prompt": "sword", "width": 512}
    assert request.headers["authorization"] == f"Basic {TOKEN}"
    assert request.headers["user-agent"] == f"pipeline/{__version__}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert result.job is not None and result.job.job_id == "job_1"
    assert result.cost.creative_units_cost == 5 and result.cost.cost_details == {"a": 5}


@pytest.mark.parametrize(("dry_run", "param"), [(True, "true"), ("api", "api")])
async def test_a_269_dry_run_gives_the_cost_and_no_job(
    client: ApiClient, httpx_mock: HTTPXMock, dry_run: Any, param: str
) -> None:
    httpx_mock.add_response(
        status_code=269, json={"creativeUnitsCost": 7.5, "creativeUnitsDiscount": 0}
    )
    result = await client.generate("model_flux", {"prompt": "x"}, dry_run=dry_run)
    assert httpx_mock.get_requests()[0].url.params["dryRun"] == param
    assert result.job is None
    assert result.cost.creative_units_cost == 7.5


async def test_path_segments_are_percent_encoded(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"job": job()})
    await client.get_job("job/a b?c#d")
    assert httpx_mock.get_requests()[0].url.raw_path == b"/v1/jobs/job%2Fa%20b%3Fc%23d"


@pytest.mark.parametrize("bad", ["", ".", "..", "%2e%2E"])
async def test_a_dot_segment_is_refused_before_sending(client: ApiClient, bad: str) -> None:
    with pytest.raises(ApiError, match="not a usable id") as caught:
        await client.get_job(bad)
    assert not caught.value.transient


async def test_project_id_goes_on_every_call(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"asset": asset()})
    creds = Credentials(KEY, SECRET)
    async with ApiClient(base_url=BASE, credentials=creds, project_id="proj_9") as api:
        await api.get_asset("asset_1")
    assert httpx_mock.get_requests()[0].url.params["projectId"] == "proj_9"


async def test_list_jobs_pages_on_past_an_empty_page(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"jobs": [job("job_1")], "nextPaginationToken": "t1"})
    httpx_mock.add_response(json={"jobs": [], "nextPaginationToken": "t2"})
    httpx_mock.add_response(json={"jobs": [job("job_2")], "nextPaginationToken": ""})
    found = [
        j.job_id
        async for j in client.list_jobs(
            status="queued", types=["custom", "inference"], created_after="2026-01-01T00:00:00Z"
        )
    ]
    assert found == ["job_1", "job_2"]
    urls = [r.url for r in httpx_mock.get_requests()]
    assert all(u.path == "/v1/jobs" for u in urls)
    assert b"types=custom%2Cinference" in urls[0].query
    assert urls[0].params["status"] == "queued" and urls[0].params["pageSize"] == "100"
    assert urls[0].params["createdAfter"] == "2026-01-01T00:00:00Z"
    assert "paginationToken" not in urls[0].params
    assert [u.params["paginationToken"] for u in urls[1:]] == ["t1", "t2"]


async def test_one_page_at_a_time_so_a_retry_resumes_where_it_failed(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"jobs": [job("job_1")], "nextPaginationToken": "t1"})
    httpx_mock.add_response(status_code=503)
    httpx_mock.add_response(json={"jobs": [job("job_2")]})
    jobs, token = await client.list_jobs_page()
    assert [j.job_id for j in jobs] == ["job_1"] and token == "t1"
    with pytest.raises(ApiTransient):
        await client.list_jobs_page(token)
    jobs, token = await client.list_jobs_page(token)  # the same page, asked again
    assert [j.job_id for j in jobs] == ["job_2"] and token is None
    pages = [r.url.params.get("paginationToken") for r in httpx_mock.get_requests()]
    assert pages == [None, "t1", "t1"]


async def test_list_jobs_refuses_a_token_that_repeats(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"jobs": [], "nextPaginationToken": "same"}, is_reusable=True)
    with pytest.raises(ApiTransient, match="nextPaginationToken"):
        async for _ in client.list_jobs():
            pass
    assert len(httpx_mock.get_requests()) == 2


async def test_cancel_job_posts_the_action(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"job": job(status="canceled")})
    canceled = await client.cancel_job("job_1")
    request = httpx_mock.get_requests()[0]
    assert (request.method, request.url.path) == ("POST", "/v1/jobs/job_1/action")
    assert sent_json(request) == {"action": "cancel"}
    assert canceled.is_terminal


async def test_assets_one_and_in_bulk(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"asset": asset("asset_1")})
    httpx_mock.add_response(json={"assets": [asset("asset_2"), asset("asset_3")]})
    assert (await client.get_asset("asset_1")).metadata.seed == "42"
    assert [a.id for a in await client.get_assets(["asset_2", "asset_3"])] == ["asset_2", "asset_3"]
    assert await client.get_assets([]) == []  # no request
    one, bulk = httpx_mock.get_requests()
    assert (one.method, one.url.path) == ("GET", "/v1/assets/asset_1")
    assert (bulk.method, bulk.url.path) == ("POST", "/v1/assets/get-bulk")
    assert sent_json(bulk) == {"assetIds": ["asset_2", "asset_3"]}


async def test_upload_asset_sends_a_data_url(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"asset": asset()})
    await client.upload_asset(
        "ref.jpg", b"\xff\xd8jpeg", mime_type="image/jpeg", collection_ids=["c"]
    )
    request = httpx_mock.get_requests()[0]
    assert (request.method, request.url.path) == ("POST", "/v1/assets")
    encoded = base64.b64encode(b"\xff\xd8jpeg").decode()
    assert sent_json(request) == {
        "name": "ref.jpg",
        "image": f"data:image/jpeg;base64,{encoded}",
        "collectionIds": ["c"],
    }


async def test_get_model_reads_inputs_and_ui_config(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    inputs = [
        {"name": "prompt", "type": "string", "required": {"always": True}},
        {"name": "loras", "type": "model_array", "modelTypes": ["flux.1-lora"], "maxLength": 3},
        {"name": "width", "type": "number", "min": 256, "max": 2048, "step": 64},
    ]
    ui = {"lorasComponent": {"modelInput": "loras", "scaleInput": "scales"}}
    httpx_mock.add_response(json={"model": model(inputs=inputs, uiConfig=ui, brandNew=1)})
    got = await client.get_model("model_1")
    assert httpx_mock.get_requests()[0].url.path == "/v1/models/model_1"
    assert got.inputs is not None and [i.name for i in got.inputs] == ["prompt", "loras", "width"]
    assert got.inputs[0].required is not None and got.inputs[0].required.always
    assert got.inputs[1].model_types == ["flux.1-lora"] and got.inputs[1].max_length == 3
    assert got.ui_config is not None and got.ui_config.loras_component is not None
    assert got.ui_config.loras_component.scale_input == "scales"
    assert got.model_extra == {"brandNew": 1}


async def test_create_model_and_training_images(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json={"model": model()})
    httpx_mock.add_response(json={"trainingImage": {"id": "ti_1", "name": "a.png"}})
    httpx_mock.add_response(json={"trainingImage": {"id": "ti_2"}})
    await client.create_model(name="pixel", type="flux.1-lora", collection_ids=["c"])
    image = await client.add_training_image("model_1", data=b"png", name="a.png", preset="style")
    await client.add_training_image("model_1", asset_id="asset_9")
    created, by_data, by_asset = httpx_mock.get_requests()
    assert (created.method, created.url.path) == ("POST", "/v1/models")
    assert sent_json(created) == {"name": "pixel", "type": "flux.1-lora", "collectionIds": ["c"]}
    assert by_data.url.path == "/v1/models/model_1/training-images"
    data = f"data:image/png;base64,{base64.b64encode(b'png').decode()}"
    assert sent_json(by_data) == {"data": data, "name": "a.png", "preset": "style"}
    assert sent_json(by_asset) == {"assetId": "asset_9"}
    assert image.id == "ti_1"


@pytest.mark.parametrize("given", [{}, {"data": b"x", "asset_id": "asset_1"}])
async def test_a_training_image_needs_data_or_an_asset(
    client: ApiClient, given: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await client.add_training_image("model_1", **given)


async def test_train_and_its_dry_run(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=269, json={"creativeUnitsCost": 100})
    httpx_mock.add_response(json={"job": job(jobType="flux-model-training"), "model": model()})
    dry = await client.train("model_1", parameters={"rank": 16}, dry_run=True)
    real = await client.train("model_1")
    assert (dry.job, dry.model, dry.cost.creative_units_cost) == (None, None, 100)
    assert real.job is not None and real.model is not None and real.model.id == "model_1"
    first, second = httpx_mock.get_requests()
    assert (first.method, first.url.path) == ("PUT", "/v1/models/model_1/train")
    assert first.url.params["dryRun"] == "true" and sent_json(first) == {"parameters": {"rank": 16}}
    assert "dryRun" not in second.url.params and sent_json(second) == {}


async def test_collections_are_filled_in_batches_of_49(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"collection": collection()})
    for count in (49, 98, 100):
        httpx_mock.add_response(json={"collection": collection(count)})
    made = await client.create_collection("icons")
    ids = [f"asset_{n}" for n in range(100)]
    filled = await client.add_to_collection(made.id, ids)
    create, *puts = httpx_mock.get_requests()
    assert sent_json(create) == {"name": "icons"}
    assert [(r.method, r.url.path) for r in puts] == [("PUT", "/v1/collections/col_1/assets")] * 3
    assert [len(sent_json(r)["assetIds"]) for r in puts] == [49, 49, 2]
    assert [a for r in puts for a in sent_json(r)["assetIds"]] == ids
    assert filled.asset_count == 100


async def test_adding_nothing_to_a_collection_reads_it(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json={"collection": collection(3)})
    assert (await client.add_to_collection("col_1", [])).asset_count == 3
    assert httpx_mock.get_requests()[0].method == "GET"


async def test_caption_and_its_dry_run(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    reply = {"captions": ["a sword"], "job": job(jobType="caption"), "detailsLevel": "action"}
    httpx_mock.add_response(json={**reply, "creativeUnitsCost": 1})
    httpx_mock.add_response(status_code=269, json={"creativeUnitsCost": 1})
    got = await client.caption(["asset_1"], details_level="action")
    dry = await client.caption(["asset_1"], dry_run="api")
    assert got.captions == ["a sword"] and got.details_level == "action" and got.job is not None
    assert (dry.captions, dry.job, dry.cost.creative_units_cost) == ([], None, 1)
    first, second = httpx_mock.get_requests()
    assert (first.method, first.url.path) == ("POST", "/v1/generate/caption")
    assert sent_json(first) == {"images": ["asset_1"], "detailsLevel": "action"}
    assert second.url.params["dryRun"] == "api"


# --- downloads ----------------------------------------------------------------------------------


async def test_download_streams_without_our_authorization(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url="https://cdn.test/a.png?sig=S", content=b"PNGDATA")
    async with client.download("https://cdn.test/a.png?sig=S") as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    assert body == b"PNGDATA"
    request = httpx_mock.get_requests()[0]
    assert "authorization" not in request.headers
    assert request.headers["accept"] == "*/*"


async def test_download_follows_http_redirects_only(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        url="https://cdn.test/a.png", status_code=302, headers={"location": "/b.png?x=1"}
    )
    httpx_mock.add_response(url="https://cdn.test/b.png?x=1", content=b"ok")
    async with client.download("https://cdn.test/a.png") as response:
        assert await response.aread() == b"ok"
    httpx_mock.add_response(
        url="https://cdn.test/c.png", status_code=301, headers={"location": "file:///etc/passwd"}
    )
    with pytest.raises(ApiRejected, match="not http or https") as caught:
        async with client.download("https://cdn.test/c.png"):
            pass
    assert caught.value.status == 301


async def test_download_stops_after_five_redirects(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=307, headers={"location": "/again"}, is_reusable=True)
    with pytest.raises(ApiRejected, match="more than 5 redirects"):
        async with client.download("https://cdn.test/loop"):
            pass
    assert len(httpx_mock.get_requests()) == 6


@pytest.mark.parametrize("url", ["ftp://cdn.test/a.png", "file:///etc/passwd", "not a url"])
async def test_download_refuses_other_schemes(client: ApiClient, url: str) -> None:
    with pytest.raises(ApiError, match="only http"):
        async with client.download(url):
            pass


async def test_a_refused_signed_url_is_not_an_auth_error(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=403, text="<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(ApiRejected) as caught:
        async with client.download("https://cdn.test/a.png?X-Amz-Signature=SIG"):
            pass
    err = caught.value
    assert type(err) is ApiRejected and "expired" in err.hint
    assert err.path == "https://cdn.test/a.png" and "SIG" not in str(err)


async def test_a_download_dropped_mid_body_is_unreachable(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(stream=_Dropping(b"PNG"))
    with pytest.raises(ApiUnreachable) as caught:
        async with client.download("https://cdn.test/a.png") as response:
            async for _ in response.aiter_raw():
                pass
    assert caught.value.maybe_sent and caught.value.path == "https://cdn.test/a.png"


# --- errors -------------------------------------------------------------------------------------


class _Dropping(httpx.AsyncByteStream):
    """A body that stops half way, as when the server drops the connection."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


Arrange = Callable[[HTTPXMock], None]


def _raise(kind: type[httpx.TransportError], message: str) -> Arrange:
    return lambda mock: mock.add_exception(kind(message))


def _answer(status: int, **kwargs: Any) -> Arrange:
    return lambda mock: mock.add_response(status_code=status, **kwargs)


# id -> (arrange, expected class, attributes expected on the error)
ERROR_CASES: dict[str, tuple[Arrange, type[ApiError], dict[str, Any]]] = {
    "connection refused": (
        _raise(httpx.ConnectError, "[Errno 111] Connection refused"),
        ApiUnreachable,
        {"maybe_sent": False},
    ),
    "connect timeout": (
        _raise(httpx.ConnectTimeout, "timed out"),
        ApiUnreachable,
        {"maybe_sent": False},
    ),
    "pool timeout": (_raise(httpx.PoolTimeout, ""), ApiUnreachable, {"maybe_sent": False}),
    "read timeout": (_raise(httpx.ReadTimeout, "timed out"), ApiUnreachable, {"maybe_sent": True}),
    "write timeout": (
        _raise(httpx.WriteTimeout, "timed out"),
        ApiUnreachable,
        {"maybe_sent": True},
    ),
    "server disconnected": (
        _raise(httpx.RemoteProtocolError, "Server disconnected without sending a response."),
        ApiUnreachable,
        {"maybe_sent": True},
    ),
    "read error": (_raise(httpx.ReadError, "reset by peer"), ApiUnreachable, {"maybe_sent": True}),
    "dropped mid-body": (
        lambda mock: mock.add_response(stream=_Dropping(b'{"job": {')),
        ApiUnreachable,
        {"maybe_sent": True},
    ),
    "header echoed by h11": (
        _raise(httpx.LocalProtocolError, f"Illegal header value b'Basic {TOKEN}'"),
        ApiUnreachable,
        {"maybe_sent": True},
    ),
    "400 reason and hint": (
        _answer(400, json={"reason": "width must be <= 2048", "hint": "use 1024"}),
        ApiRejected,
        {"status": 400, "reason": "width must be <= 2048", "hint": "use 1024"},
    ),
    "401": (
        _answer(401, json={"message": f"bad key {KEY}"}),
        ApiAuthError,
        {"status": 401, "reason": "bad key <redacted>"},
    ),
    "403 with hint": (
        _answer(403, json={"error": "forbidden", "hint": "ask an admin"}),
        ApiAuthError,
        {"status": 403, "hint": "ask an admin"},
    ),
    "404": (
        _answer(404, json={"detail": "no such model"}),
        ApiRejected,
        {"reason": "no such model"},
    ),
    "409": (_answer(409, json={"reason": "busy"}), ApiTransient, {"status": 409}),
    "429 parallel cap": (
        _answer(
            429,
            json={"reason": "too many jobs", "details": {"actionName": "parallel-custom-jobs"}},
            headers={"Retry-After": "7"},
        ),
        ApiTransient,
        {
            "retry_after": 7.0,
            "parallel_limit": True,
            "details": {"actionName": "parallel-custom-jobs"},
        },
    ),
    "500": (
        _answer(500, json={"reason": "oops"}),
        ApiTransient,
        {"status": 500, "retry_after": None},
    ),
    "503 plain text": (
        _answer(503, text="upstream unavailable\n", headers={"retry-after-ms": "1500"}),
        ApiTransient,
        {"reason": "upstream unavailable", "retry_after": 1.5},
    ),
    "503 empty body": (_answer(503), ApiTransient, {"reason": "Service Unavailable"}),
    "x-should-retry false": (
        _answer(503, headers={"x-should-retry": "false"}),
        ApiRejected,
        {"status": 503},
    ),
    "x-should-retry true": (
        _answer(400, headers={"X-Should-Retry": "True"}),
        ApiTransient,
        {"status": 400},
    ),
    "redirect not followed": (
        _answer(302, headers={"location": "https://elsewhere.test/"}),
        ApiRejected,
        {"status": 302},
    ),
    "malformed json": (_answer(200, text="{not json"), ApiTransient, {"status": 200}),
    "json not an object": (_answer(200, json=[1, 2]), ApiTransient, {"status": 200}),
    "missing job": (_answer(200, json={"creativeUnitsCost": 1}), ApiTransient, {"status": 200}),
    "job without jobId": (
        _answer(200, json={"job": {**job(), "jobId": None}}),
        ApiTransient,
        {"status": 200},
    ),
}


async def _generate_failure(client: ApiClient, httpx_mock: HTTPXMock, case: str) -> ApiError:
    arrange, _, _ = ERROR_CASES[case]
    arrange(httpx_mock)
    with pytest.raises(ApiError) as caught:
        await client.generate("model_flux", {"prompt": "x"})
    return caught.value


@pytest.mark.parametrize("case", ERROR_CASES)
async def test_each_failure_becomes_the_right_error(
    client: ApiClient, httpx_mock: HTTPXMock, case: str
) -> None:
    err = await _generate_failure(client, httpx_mock, case)
    _, expected, attributes = ERROR_CASES[case]
    assert type(err) is expected
    assert (err.method, err.path) == ("POST", "/generate/custom/model_flux")
    assert str(err).startswith("POST /generate/custom/model_flux: ")
    for name, value in attributes.items():
        assert getattr(err, name) == value, name


@pytest.mark.parametrize("case", ERROR_CASES)
async def test_no_error_shows_or_holds_a_secret(
    client: ApiClient, httpx_mock: HTTPXMock, case: str
) -> None:
    err = await _generate_failure(client, httpx_mock, case)
    assert err.__cause__ is None and err.__context__ is None  # the httpx request is not reachable
    printed = "".join(traceback.format_exception(err))
    for text in (str(err), repr(err), printed, repr(client), repr(Credentials(KEY, SECRET))):
        assert KEY not in text and SECRET not in text and TOKEN not in text


async def test_credentials_and_client_reprs_show_no_secret() -> None:
    creds = Credentials(KEY, SECRET)
    assert repr(creds) == str(creds) == "Credentials(key='KE…', secret=<redacted>)"
    async with ApiClient(base_url=BASE, credentials=creds) as client:
        assert repr(client) == f"ApiClient(base_url='{BASE}')"


async def test_malformed_success_names_the_field(client: ApiClient, httpx_mock: HTTPXMock) -> None:
    err = await _generate_failure(client, httpx_mock, "job without jobId")
    assert isinstance(err, ApiTransient)
    assert err.reason.startswith("malformed response: job.jobId")


async def test_a_long_error_page_is_cut_to_about_300_characters(
    client: ApiClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=502, html="<html>" + "x" * 5000 + "</html>")
    with pytest.raises(ApiTransient) as caught:
        await client.get_job("job_1")
    assert len(caught.value.reason) == 301 and caught.value.reason.endswith("…")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 31 Dec 2025 23:59:00 GMT"}, None),  # in the past
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "nope", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
async def test_retry_after_reaches_the_error(
    client: ApiClient, httpx_mock: HTTPXMock, headers: dict[str, str], expected: float | None
) -> None:
    httpx_mock.add_response(status_code=429, headers=headers)
    with pytest.raises(ApiTransient) as caught:
        await client.get_job("job_1")
    assert caught.value.retry_after == expected
