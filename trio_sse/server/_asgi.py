"""The API through ASGI: the front door for Quart apps, ours or a user's.

:class:`ASGIAdapter` matches the same route table as the lean server, with the same raw path
bytes, reads the body within the same limits and deadline, and calls the same endpoints, so a
URL gets the same answer whichever server is in front. Paths the table does not know go to the
application behind (``fallback``), except under a prefix of our own, where they are a 404 of
ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from ._api import HTTPAPI
from ._errors import HTTPError
from ._http import add_header, split_target
from ._routes import Request, Response, Route, allowed_methods, match
from ._transport import ASGITransport, Receive, Send

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Disconnected(Exception):
    """The client left while its body was being read."""


class ASGIAdapter:
    """Serves :class:`HTTPAPI` for the HTTP requests under ``prefix`` (``""``: all of them)."""

    def __init__(self, api: Callable[[], HTTPAPI], prefix: str = "") -> None:
        self._api = api
        self._prefix = prefix.rstrip("/").encode()

    def path_of(self, scope: Scope) -> bytes | None:
        """The API path of an HTTP request, or None if it is not under the prefix."""
        if scope["type"] != "http":
            return None
        split = split_target(scope.get("raw_path") or scope["path"].encode())
        raw = b"" if split is None else split[0]
        root: str = scope.get("root_path", "")
        prefix = root.encode() + self._prefix
        if not prefix:
            return raw
        if raw == prefix:
            return b"/"
        if raw.startswith(prefix + b"/"):
            return raw[len(prefix) :]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp) -> None:
        path = self.path_of(scope)
        if path is None:
            await fallback(scope, receive, send)
            return
        api = self._api()
        method = scope["method"]
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            add_header(headers, name.decode("latin-1").lower(), value.decode("latin-1"))
        request = Request(method, path, scope.get("query_string", b""), headers)
        if method == "OPTIONS" and (allow := allowed_methods(path)) is not None:
            await _send(send, api.options(request, allow), method)
            return
        try:
            route, request.params = match(method, path)
        except HTTPError as error:
            if error.status == 404 and not self._prefix:
                await fallback(scope, receive, send)  # the app's own routes
            else:
                await _send(send, api.refuse(request, error), method)
            return
        if route.stream:
            await api.streams.serve(request, ASGITransport(receive, send))
            return
        try:
            request.body = await _read_body(receive, headers, api)
        except HTTPError as error:
            await _send(send, api.refuse(request, error), method)
            return
        except _Disconnected:
            return
        response = await _respond(api, route, request, receive)
        if response is not None:
            await _send(send, response, method)


async def _respond(
    api: HTTPAPI, route: Route, request: Request, receive: Receive
) -> Response | None:
    if not route.long:
        return await api.respond(route, request)
    response = None
    async with trio.open_nursery() as nursery:  # a long poll ends if its client leaves

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        response = await api.respond(route, request)
        nursery.cancel_scope.cancel()
    return response


async def _read_body(receive: Receive, headers: dict[str, str], api: HTTPAPI) -> bytes:
    limit = api.settings.max_body_bytes
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"the body is over max_body_bytes={limit}")
    body = bytearray()
    with trio.move_on_after(api.settings.body_timeout) as scope:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            body += message.get("body", b"")
            if len(body) > limit:
                raise HTTPError(413, f"the body is over max_body_bytes={limit}")
            if not message.get("more_body", False):
                return bytes(body)
    assert scope.cancelled_caught
    raise HTTPError(408, "the body did not arrive in time")


async def _send(send: Send, response: Response, method: str) -> None:
    headers = [] if response.status == 204 else [(b"content-length", b"%d" % len(response.body))]
    if response.content_type:
        headers.append((b"content-type", response.content_type.encode("latin-1")))
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    body = b"" if method == "HEAD" else response.body
    await send({"type": "http.response.body", "body": body, "more_body": False})
