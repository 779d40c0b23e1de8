"""A Quart-Trio app with trio-sse embedded: start a job, watch its progress as a stream.

Run it (``TRIO_SSE_*`` variables configure the server, e.g. ``TRIO_SSE_PORT=9000``)::

    python examples/quart_app.py

then open http://127.0.0.1:8000/, or from a shell::

    curl -s -X POST -H 'X-API-Key: dev-key' 127.0.0.1:8000/jobs
    # {"events": "/jobs/job-.../events", "id": "job-...", "lastEventId": "...-1"}
    curl -N -H 'X-API-Key: dev-key' -H 'Last-Event-ID: ...-1' 127.0.0.1:8000/jobs/job-.../events

What a user's app does here, and what trio-sse does for it:

- The app's own routes and its own auth (an API key in the ``X-API-Key`` header, or in the
  ``api_key`` cookie for ``EventSource``, which cannot send headers). After its check, the
  events route returns ``await sse.stream(job_id)``: heartbeats, ``Last-Event-ID`` resume, and
  the stream ends as soon as its client leaves.
- ``POST /jobs`` publishes ``queued`` and answers with that event's id; the client streams from
  it, so no progress event is missed however late it connects. The job runs in a nursery the
  app owns and publishes with ``sse.broadcaster.publish``.
- The whole trio-sse HTTP API under ``/sse`` (``/sse/stats``, ``/sse/healthz``,
  ``/sse/sessions/<id>/poll``...). Publishing through it needs a bearer token: set
  ``TRIO_SSE_JWT_KEY`` (and make one with ``trio-sse token``), otherwise only the app publishes.
- Ctrl+C (or SIGTERM): the shutdown trigger calls ``sse.close()`` first, so every open stream
  ends with a ``retry:`` line at once instead of being cut at Hypercorn's graceful timeout.
"""

from __future__ import annotations

import hmac
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from trio_sse import Broadcaster, ServerSettings, TrioSSE

PAGE = """<!doctype html>
<title>Jobs</title>
<p><input id="key" placeholder="API key (dev-key)"> <button id="start">Start a job</button></p>
<pre id="log"></pre>
<script>
start.onclick = async () => {
  document.cookie = `api_key=${encodeURIComponent(key.value)}; path=/; SameSite=Strict`;
  const answer = await fetch("/jobs", {method: "POST", headers: {"X-API-Key": key.value}});
  if (!answer.ok) { log.append(`refused: ${answer.status}\\n`); return; }
  const job = await answer.json();
  const events = new EventSource(`${job.events}?lastEventId=${job.lastEventId}`);
  for (const type of ["progress", "done"]) {
    events.addEventListener(type, (e) => log.append(`${job.id} ${type} ${e.data}\\n`));
  }
  events.addEventListener("done", () => events.close());
};
</script>
"""


def create_app(
    settings: ServerSettings | None = None,
    *,
    api_key: str = "dev-key",
    job_steps: int = 5,
    step_seconds: float = 1.0,
) -> QuartTrio:
    """The app; ``app.extensions["trio_sse"]`` is its :class:`TrioSSE`."""
    app = QuartTrio(__name__)
    sse = TrioSSE(app, prefix="/sse", settings=settings)

    def authorized(*, cookie: bool = False) -> bool:
        given = request.headers.get("X-API-Key", "")
        if not given and cookie:  # never for POST: a cookie would allow cross-site requests
            given = request.cookies.get("api_key", "")
        return hmac.compare_digest(given.encode(), api_key.encode())

    @app.before_serving
    async def open_job_nursery() -> None:
        app.extensions["jobs"] = await app.nursery.start(_job_nursery)

    @app.after_serving
    async def cancel_jobs() -> None:
        app.extensions["jobs"].cancel_scope.cancel()

    @app.get("/")
    async def index() -> ResponseReturnValue:
        return PAGE

    @app.post("/jobs")
    async def start_job() -> ResponseReturnValue:
        if not authorized():
            return {"error": "a valid X-API-Key header is needed"}, 401
        job_id = f"job-{secrets.token_hex(8)}"
        queued = await sse.broadcaster.publish(job_id, "queued", {"steps": job_steps})
        jobs: trio.Nursery = app.extensions["jobs"]
        jobs.start_soon(run_job, sse.broadcaster, job_id, job_steps, step_seconds)
        events = f"/jobs/{job_id}/events"
        return {"id": job_id, "events": events, "lastEventId": queued.id}, 202

    @app.get("/jobs/<job_id>/events")
    async def job_events(job_id: str) -> ResponseReturnValue:
        if not authorized(cookie=True):
            return {"error": "a valid API key is needed"}, 401
        return await sse.stream(job_id)

    return app


async def run_job(broadcaster: Broadcaster, job_id: str, steps: int, step_seconds: float) -> None:
    """The app's work, publishing its progress to the session named after the job."""
    try:
        for step in range(1, steps + 1):
            await trio.sleep(step_seconds)  # the real work would be here
            await broadcaster.publish(job_id, "progress", {"step": step, "of": steps})
        await broadcaster.publish(job_id, "done", {"id": job_id})
    except trio.ClosedResourceError:
        pass  # the server is shutting down


async def _job_nursery(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


def listening_socket(settings: ServerSettings) -> socket.socket:
    """The server's socket, bound and listening.

    ``TCP_USER_TIMEOUT`` (inherited by accepted sockets) drops a client that stops reading after
    ``send_timeout``; without it Hypercorn's shielded write to it holds up shutdown for as long
    as that client lives. That is why we bind the socket ourselves.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.create_server((settings.host, settings.port), family=family, backlog=1024)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
        timeout_ms = int(settings.send_timeout * 1000)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
    return sock


def hypercorn_config(sock: socket.socket, settings: ServerSettings) -> Config:
    """Hypercorn's settings for serving on ``sock`` (which it then owns)."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.read_timeout = None  # any value would cut streams: clients send nothing after GET
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.graceful_timeout = settings.graceful_timeout
    return config


def shutdown_trigger(
    app: QuartTrio, wait: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[None]]:
    """Hypercorn's ``shutdown_trigger``: once ``wait()`` returns, end every stream, then stop.

    Hypercorn gives open requests ``graceful_timeout`` and then cancels them; streams never end
    by themselves, so they are closed first (each is told when to come back).
    """

    async def trigger() -> None:
        await wait()
        app.extensions["trio_sse"].close()

    return trigger


async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def main() -> None:
    settings = ServerSettings.from_env()
    app = create_app(settings)
    sock = listening_socket(settings)
    print(f"serving on http://{settings.host}:{sock.getsockname()[1]}/ (Ctrl+C to stop)")
    config = hypercorn_config(sock, settings)
    await serve(app, config, shutdown_trigger=shutdown_trigger(app, wait_for_signal))


if __name__ == "__main__":
    trio.run(main)
