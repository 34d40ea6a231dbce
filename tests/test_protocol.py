"""The API's pure conventions: credentials and base URL from the environment, Retry-After, error
bodies. The client's use of them on the wire is in test_client.py."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.credentials import Credentials
from pipeline.errors import InvalidInput
from pipeline.protocol import (
    DEFAULT_BASE_URL,
    base_url_from_env,
    error_fields,
    parse_retry_after,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SCENARIO_API_KEY": "k", "SCENARIO_API_SECRET": "s"}, Credentials("k", "s")),
        ({"SCENARIO_SDK_API_KEY": "k2", "SCENARIO_SDK_API_SECRET": "s2"}, Credentials("k2", "s2")),
        (
            {
                "SCENARIO_API_KEY": "k",
                "SCENARIO_API_SECRET": "s",
                "SCENARIO_SDK_API_KEY": "k2",
                "SCENARIO_SDK_API_SECRET": "s2",
            },
            Credentials("k", "s"),
        ),
        (
            {
                "SCENARIO_API_KEY": "k",
                "SCENARIO_SDK_API_KEY": "k2",
                "SCENARIO_SDK_API_SECRET": "s2",
            },
            Credentials("k2", "s2"),
        ),
        ({"SCENARIO_API_KEY": "k", "SCENARIO_API_SECRET": ""}, None),
        ({}, None),
    ],
)
def test_credentials_come_from_either_pair_of_variables(
    environ: dict[str, str], expected: Credentials | None
) -> None:
    assert Credentials.from_env(environ) == expected


def test_basic_token_is_base64_of_key_colon_secret() -> None:
    assert Credentials("key", "sécret").basic_token() == "a2V5OnPDqWNyZXQ="


def test_base_url_defaults_and_can_be_overridden() -> None:
    assert base_url_from_env({}) == DEFAULT_BASE_URL
    assert base_url_from_env({"SCENARIO_BASE_URL": "http://127.0.0.1:8787/v1/"}) == (
        "http://127.0.0.1:8787/v1"
    )


@pytest.mark.parametrize(
    "bad", ["ftp://x/v1", "localhost:8787", "https://u:p@x/v1", "https://x/v1?k=1", "http://"]
)
def test_an_unusable_base_url_is_invalid_input(bad: str) -> None:
    with pytest.raises(InvalidInput, match="SCENARIO_BASE_URL"):
        base_url_from_env({"SCENARIO_BASE_URL": bad})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, 60.0),
        ({"retry-after": "Thu, 01 Jan 2026 00:01:00"}, 60.0),  # no zone: GMT
        ({"retry-after": "Wed, 31 Dec 2025 23:00:00 GMT"}, None),
        ({"retry-after": "tomorrow-ish"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "60"}, 1.5),
        ({"retry-after-ms": "-5", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"retry-after": "86400000"}, 86400000.0),  # not capped here: the scheduler caps
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


header_text = st.one_of(
    st.text(),
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.builds("{} {} {} {}:{}:{} {}".format, *[st.text(max_size=6) for _ in range(7)]),
)


@given(
    ms=st.none() | header_text,
    seconds=st.none() | header_text,
    now=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)
def test_retry_after_never_raises(ms: str | None, seconds: str | None, now: float) -> None:
    headers = {k: v for k, v in (("retry-after-ms", ms), ("retry-after", seconds)) if v is not None}
    got = parse_retry_after(headers, now=now)
    assert got is None or (math.isfinite(got) and got >= 0)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"reason": "r", "hint": "h", "details": {"a": 1}}', ("r", "h", {"a": 1})),
        (b'{"message": "m", "hint": 3, "details": "x"}', ("m", "", {})),
        (b'{"error": {"code": 1}}', ('{"error": {"code": 1}}', "", {})),
        (b"  plain\n text  ", ("plain text", "", {})),
        (b"\xff\xfe", ("\ufffd\ufffd", "", {})),
        (b"", ("", "", {})),
    ],
)
def test_error_fields_are_read_liberally(
    content: bytes, expected: tuple[str, str, dict[str, object]]
) -> None:
    assert error_fields(content) == expected
