"""The HTTP layer: one route table, one set of endpoints, three front doors.

A request on the lean path (``trio-sse serve``), top to bottom::

    _serve.py       serve(): listening socket, accept loop, shared tasks, graceful drain
      |
    _connection.py  one connection: request after request, head and body deadlines
      |
    _http.py        sans-IO: request head parsing, chunked bodies, response heads
      |
    _routes.py      the route table: method + raw path -> route and parameters (or 404/405/400)
      |
    _api.py         the endpoints: publish (one or a batch), poll, delete, stats, health, ...
    _stream.py      the stream endpoint: subscribe, then write events and heartbeats
      |
    _transport.py   the socket transport (also the subscription's output), or ASGI
      |
    _coalesce.py    one task writes what publishers handed to idle streams
    _hangup.py      one task notices clients that left

``_asgi.py`` serves the same routes and endpoints through ASGI (``create_app()`` and the
``TrioSSE`` Quart extension, in ``trio_sse/_app.py`` and ``trio_sse/_quart.py``), and
``_errors.py`` maps every error to its HTTP answer, for all of them.
"""

from ._serve import RunningServer as RunningServer
from ._serve import serve as serve

__all__ = ["RunningServer", "serve"]
