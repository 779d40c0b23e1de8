"""``TrioSSE``: the trio-sse API inside an existing Quart-Trio application.

The usual extension shape: ``sse = TrioSSE(app, prefix="/sse")``, or ``sse = TrioSSE()`` then
``sse.init_app(app)``. It mounts the whole HTTP API under ``prefix`` (the same route table and
endpoints as ``trio-sse serve``, through ``server/_asgi.py``), runs the broadcaster and the
heartbeat task in the app's nursery while the app serves, and gives the app's own routes a
stream response after the app's own checks::

    @app.get("/jobs/<job_id>/events")
    async def job_events(job_id: str):
        if not current_user_may_watch(job_id):   # the app's own auth
            abort(403)
        return await sse.stream(job_id)           # heartbeats, Last-Event-ID, clean shutdown

Call :meth:`TrioSSE.close` from a shutdown trigger (or let ``after_serving`` do it) so open
streams end with a ``retry:`` instead of being cut.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import trio
from quart import Quart, Response, request

from ._auth import Authorizer
from ._broadcaster import Broadcaster, open_broadcaster
from ._config import BroadcasterConfig
from ._protocol import encode_comment, encode_retry
from ._settings import ServerSettings
from .backends import Backend
from .server._api import HTTPAPI
from .server._asgi import ASGIAdapter
from .server._errors import HTTPError, answer_for
from .server._routes import check_cursor, check_session_id
from .server._stream import STREAM_HEADERS


class TrioSSE:
    """The trio-sse HTTP API and stream helper for a Quart-Trio app.

    Args:
        app: The app, or None to call :meth:`init_app` later.
        prefix: Where the API is mounted (``""``: at the root).
        config: The broadcaster's settings, when the extension runs its own broadcaster.
        settings: Limits, CORS and auth of the HTTP API.
        broadcaster: A broadcaster the caller runs (``async with open_broadcaster()``);
            otherwise the extension opens one while the app serves.
        backend: The broadcaster's backend, when the extension opens it.
        authorizer: Checks tokens; by default one with the settings' keys.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        prefix: str = "/sse",
        config: BroadcasterConfig | None = None,
        settings: ServerSettings | None = None,
        broadcaster: Broadcaster | None = None,
        backend: Backend | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.settings = settings or ServerSettings()
        self._config = config
        self._backend = backend
        self._authorizer = authorizer
        self._api: HTTPAPI | None = None
        self._stopping = trio.Event()
        self._owns_broadcaster = broadcaster is None
        self._adapter = ASGIAdapter(lambda: self.api, prefix)
        if broadcaster is not None:
            self._api = HTTPAPI(broadcaster, self.settings, authorizer)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Mount the API on ``app`` and run the broadcaster while it serves."""
        app.extensions["trio_sse"] = self
        inner = app.asgi_app
        adapter = self._adapter

        async def app_routes(scope: Any, receive: Any, send: Any) -> None:
            await inner(scope, receive, _end_shielded(send))

        async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
            await adapter(scope, receive, send, app_routes)

        app.asgi_app = asgi_app  # type: ignore[method-assign]
        # sse.stream() refusals (and the app's own raises of it) are answered as JSON
        app.register_error_handler(HTTPError, error_response)

        @app.before_serving
        async def start_trio_sse() -> None:
            await app.nursery.start(self._run)  # type: ignore[attr-defined]

        @app.after_serving
        async def stop_trio_sse() -> None:
            self.close()

    @property
    def api(self) -> HTTPAPI:
        if self._api is None:
            raise RuntimeError("trio-sse is not running: the app is not serving yet")
        return self._api

    @property
    def broadcaster(self) -> Broadcaster:
        """The broadcaster behind the API (publish to it from the app's own code)."""
        return self.api.broadcaster

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._stopping = trio.Event()  # the app may be served again after a close()
        if not self._owns_broadcaster and self._api is not None:  # the caller's broadcaster
            async with trio.open_nursery() as nursery:
                await nursery.start(self._api.run)
                task_status.started()
                await self._stopping.wait()
                nursery.cancel_scope.cancel()
            return
        async with open_broadcaster(self._config, backend=self._backend) as broadcaster:
            self._api = HTTPAPI(broadcaster, self.settings, self._authorizer)
            async with trio.open_nursery() as nursery:
                await nursery.start(self._api.run)
                task_status.started()
                await self._stopping.wait()
                nursery.cancel_scope.cancel()

    def close(self) -> None:
        """End every open stream (each is told when to come back) and stop the tasks.

        Closes the broadcaster too when the extension opened it. Idempotent.
        """
        if self._api is not None and self._owns_broadcaster:
            self._api.broadcaster.close()
        self._stopping.set()

    async def stream(self, session_id: str, *, last_event_id: str | None = None) -> Response:
        """A stream response for ``session_id``, from the app's own route.

        Resumes after ``last_event_id``, or after the request's ``Last-Event-ID`` header (or
        ``lastEventId`` query parameter). The checks of the API's stream route apply (session
        id, cursor length, limits, memory); auth is the app's own, done before calling this.

        Raises:
            HTTPError: the request cannot be served; Quart answers it as JSON (the app may
                also catch it).
        """
        api = self.api
        check_session_id(session_id)
        cursor = last_event_id or request.headers.get("Last-Event-ID")
        cursor = check_cursor(cursor or request.args.get("lastEventId"), self.settings)
        try:
            api.broadcaster.check_subscribe(session_id)
        except Exception as error:
            answer = answer_for(error)
            if answer is None:
                raise
            raise answer from None
        response = Response(
            _events(api, session_id, cursor), status=200, headers=dict(STREAM_HEADERS)
        )
        response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut the stream
        return response


async def error_response(error: HTTPError) -> Response:
    """The JSON answer for ``error`` (a Quart error handler)."""
    return Response(error.body(), error.status, dict(error.headers), mimetype="application/json")


def _end_shielded(send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """``send``, with the message that ends a response shielded from cancellation.

    Works around a Quart-Trio trap (``STACK-NOTES.md``): Hypercorn finishes an exchange inside
    the app's ``send`` of the last body message. It tells the app ``http.disconnect``, then
    restarts the connection's keep-alive idle timer (or closes the socket). Quart-Trio's
    receive task wakes on that ``http.disconnect`` and cancels its nursery, cancelling the rest
    of that ``send``: the idle timer never starts, the connection is never closed, and every
    shutdown waits ``graceful_timeout`` for idle connections. Shielding this one ``send`` (it is
    bounded: Hypercorn shields its socket writes too) lets Hypercorn finish; a client that
    leaves earlier still cancels the handler.
    """

    async def send_end_shielded(message: Any) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return send_end_shielded


async def _events(api: HTTPAPI, session_id: str, cursor: str | None) -> AsyncGenerator[bytes, None]:
    streams = api.streams
    try:
        async with (
            streams.connection_slot(),
            api.broadcaster.subscribe(session_id, cursor) as sub,
            aclosing(streams.chunks(sub)) as chunks,
        ):
            async for chunk in chunks:
                yield chunk
    except Exception as error:  # refused after the check (a race for the last slot)
        answer = answer_for(error)
        if answer is None:
            raise
        yield encode_comment(answer.reason) + encode_retry(api.settings.retry_ms)
