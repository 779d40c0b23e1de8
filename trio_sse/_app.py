"""``create_app()``: a Quart-Trio app serving the trio-sse API over one broadcaster.

Run it under Hypercorn's trio worker (or any ASGI server on trio) when ``trio-sse serve`` is not
what you want. It is the :class:`~trio_sse.TrioSSE` extension mounted at the root of an app of
its own: the same route table, endpoints and error answers as the lean server, with the app's
own routes (add them) behind it.
"""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from ._auth import Authorizer
from ._broadcaster import Broadcaster
from ._quart import TrioSSE
from ._settings import ServerSettings
from .server._errors import HTTPError
from .server._routes import Request


class SSEApp(QuartTrio):
    """A Quart-Trio app with the trio-sse API at its root (``app.sse``)."""

    sse: TrioSSE


def create_app(
    broadcaster: Broadcaster,
    settings: ServerSettings | None = None,
    *,
    authorizer: Authorizer | None = None,
) -> SSEApp:
    """A Quart-Trio app serving ``broadcaster`` over HTTP (see ``docs/http-api.md``).

    The caller owns the broadcaster (``async with open_broadcaster() as b``) and runs the app,
    e.g. with ``hypercorn.trio.serve``; ``trio_sse.serve`` is the lean server with the same API.
    """
    app = SSEApp("trio_sse", static_folder=None)
    app.sse = TrioSSE(
        app, prefix="", settings=settings, broadcaster=broadcaster, authorizer=authorizer
    )

    @app.errorhandler(HTTPError)
    async def http_error(error: HTTPError) -> Response:
        # The same answer as the route table's refusals, CORS headers included.
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = app.sse.api.refuse(Request("", b"", b"", headers), error)
        return Response(
            answer.body, answer.status, Headers(answer.headers), mimetype="application/json"
        )

    @app.errorhandler(HTTPException)
    async def not_found(error: HTTPException) -> Response:
        # Paths the route table does not know reach the app's routes; its 404 is the table's.
        status = error.code or 500
        reason = "no such route" if status == 404 else (error.description or error.name)
        return await http_error(HTTPError(status, reason))

    return app
