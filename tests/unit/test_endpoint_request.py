"""The pull endpoint's request reader (agent.service.server.read_request), which replaced
http.server's parsing to keep http.client, email and ssl out of the idle service (issue 14):
on well-formed requests it reads what the standard library's parser read, and it refuses what
HTTP/1.1's grammar or the header budget does not allow."""

from __future__ import annotations

import io
from http import HTTPStatus
from http.client import parse_headers

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.service.server import MAX_HEADER_BYTES, BadRequest, read_request

TOKEN = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
names = st.text(TOKEN, min_size=1, max_size=20)
values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40).map(
    lambda word: word.replace("\x85", "")) | st.just("")
inner = st.lists(values, min_size=1, max_size=3).map(" ".join)  # spaces inside a value are kept


def read(data: bytes):
    return read_request(io.BytesIO(data))


def status_of(data: bytes) -> HTTPStatus:
    with pytest.raises(BadRequest) as refused:
        read(data)
    return refused.value.status


@given(st.sampled_from(["GET", "HEAD", "POST", "FOO"]), st.text(TOKEN + "/?=", min_size=1, max_size=30),
       st.sampled_from(["HTTP/1.0", "HTTP/1.1"]), st.lists(st.tuples(names, inner), max_size=8),
       st.sampled_from([b"\r\n", b"\n"]))
def test_a_well_formed_request_reads_as_the_standard_library_read_it(method, target, version, fields, end) -> None:
    head = [f"{method} {target} {version}"] + [f"{name}: {value}" for name, value in fields]
    data = end.join(line.encode("latin-1") for line in head) + end + end
    request = read(data)
    stdlib = parse_headers(io.BytesIO(data.split(end, 1)[1]))
    assert (request.method, request.target, request.line) == (method, target, head[0])
    for name, _ in fields:
        assert request.headers[name.lower()] == stdlib.get(name).strip(" \t"), name
    assert set(request.headers) == {name.lower() for name in stdlib.keys()}


def test_the_first_of_repeated_fields_counts_and_blank_lines_before_the_request_are_skipped() -> None:
    request = read(b"\r\n\r\nGET /metrics HTTP/1.1\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\nrest")
    assert (request.method, request.target, request.headers) == ("GET", "/metrics", {"authorization": "Bearer a"})


def test_spaces_inside_a_value_are_kept_and_those_around_it_dropped() -> None:
    spaces = " " * (MAX_HEADER_BYTES // 3)  # a long run (a backtracking regex took seconds over it)
    request = read(f"GET / HTTP/1.1\r\nX:\t a{spaces}b \t\r\nY: {spaces}\r\nZ:\xa0\r\n\r\n".encode("latin-1"))
    assert request.headers == {"x": f"a{spaces}b", "y": "", "z": "\xa0"}  # OWS is only space and tab


@pytest.mark.parametrize("data", [
    b"GET /\r\n\r\n",  # HTTP/0.9
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET / HTTP/1.1x\r\n\r\n",
    b"GET / http/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
    b"GET / HTTP/1.1\r\nName : value\r\n\r\n",  # RFC 9112 5.1: no space before the colon
    b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad(name): x\r\n\r\n",
])
def test_what_breaks_the_grammar_is_400(data: bytes) -> None:
    assert status_of(data) == HTTPStatus.BAD_REQUEST


def test_another_http_version_is_505() -> None:
    assert status_of(b"GET / HTTP/2.0\r\n\r\n") == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED


def test_the_budget_covers_the_request_line_and_headers_together() -> None:
    line = b"GET / HTTP/1.1\r\n"
    filler = b"X: " + b"a" * (MAX_HEADER_BYTES - len(line) - 7) + b"\r\n"
    assert len(line + filler + b"\r\n") == MAX_HEADER_BYTES
    assert read(line + filler + b"\r\n").headers["x"] == "a" * (MAX_HEADER_BYTES - len(line) - 7)
    assert status_of(line + b"Y: 1\r\n" + filler + b"\r\n") == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    assert status_of(line + filler + b"Z: 1\r\n\r\n") == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    assert status_of(b"GET /" + b"a" * MAX_HEADER_BYTES + b" HTTP/1.1\r\n\r\n") == HTTPStatus.REQUEST_URI_TOO_LONG


@pytest.mark.parametrize("data", [b"", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r\n"])
def test_a_client_that_closes_before_the_end_of_the_headers_gets_nothing(data: bytes) -> None:
    assert read(data) is None
