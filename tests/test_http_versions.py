"""HTTP versions the lean server speaks: HTTP/1.1 and 1.0 only, never cleartext HTTP/2.

``trio-sse serve`` does not terminate TLS; a TLS proxy in front gives browsers HTTP/2
(``docs/http-api.md``, "HTTP versions and TLS"). Cleartext HTTP/2 stays off, since an ``h2c``
upgrade that a proxy passes through is how h2c smuggling reaches routes the proxy guards.
These tests send raw bytes to ``trio_sse.serve`` on 127.0.0.1 port 0 (``running_server``:
``nursery.start`` under ``trio.fail_after``), with the real clock.
"""

from __future__ import annotations

import pytest
import trio

from .server_helpers import exchange_on, running_server

pytestmark = pytest.mark.real_time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The HTTP/2 connection preface (RFC 9113 section 3.4): "prior knowledge" cleartext HTTP/2."""
SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""An empty SETTINGS frame, which a client sends right after the preface."""
H2C_UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
"""An HTTP/1.1 request asking to switch to cleartext HTTP/2 (RFC 7540 section 3.2)."""


async def read_to_end(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


async def test_the_http2_preface_is_answered_505_and_the_connection_closed() -> None:
    async with running_server() as h:
        async with await trio.open_tcp_stream("127.0.0.1", h.running.port) as stream:
            await stream.send_all(PREFACE + SETTINGS_FRAME)
            answer = await read_to_end(stream)
        assert (await h.client.get("/healthz")).status_code == 200, "still serving"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 505 ")
    assert b"connection: close" in head.lower()
    assert body == b'{"error":"only HTTP/1.1 and HTTP/1.0 are served here"}'


async def test_an_http2_request_line_is_answered_505() -> None:
    async with running_server() as h:
        async with await trio.open_tcp_stream("127.0.0.1", h.running.port) as stream:
            await stream.send_all(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
            answer = await read_to_end(stream)
    assert answer.startswith(b"HTTP/1.1 505 ")


async def test_an_h2c_upgrade_is_ignored_and_the_connection_stays_http_1_1() -> None:
    async with running_server() as h:
        async with await trio.open_tcp_stream("127.0.0.1", h.running.port) as stream:
            status, headers, body = await exchange_on(stream, H2C_UPGRADE)
            assert (status, body) == (200, b'{"status":"ok"}')  # not 101 Switching Protocols
            assert "upgrade" not in headers
            assert "upgrade" not in headers.get("connection", "").lower()
            # the next request on the connection is read as HTTP/1.1, not as HTTP/2 frames
            follow_up = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
            assert (await exchange_on(stream, follow_up))[0] == 200


async def test_an_h2c_upgrade_on_a_stream_gets_an_http_1_1_event_stream() -> None:
    request = H2C_UPGRADE.replace(b"/healthz", b"/sessions/h2c/events")
    async with running_server() as h:
        async with await trio.open_tcp_stream("127.0.0.1", h.running.port) as stream:
            await stream.send_all(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200 ")
    assert b"content-type: text/event-stream" in head
    assert b"upgrade" not in head
