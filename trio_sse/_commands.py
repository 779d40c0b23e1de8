"""What the command-line tools do; ``_cli.py`` only parses their arguments."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import httpx
import trio

from ._auth import generate_key, make_token, verification_keys
from ._client import ANY_EVENT, ConnectionState, SSEClient
from ._config import BroadcasterConfig
from ._exceptions import ConfigError
from ._protocol import MessageEvent
from ._settings import ServerSettings
from .server import RunningServer, serve

logger = logging.getLogger("trio_sse")


class CommandError(Exception):
    """A failure to report on one line, with exit status 1.

    Attributes:
        index: The ``index`` the server gave (the refused event of a batch), if any.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def run_server(config: BroadcasterConfig, settings: ServerSettings, out: TextIO) -> int:
    """``trio-sse serve``: run until SIGINT or SIGTERM; the exit status.

    With ``settings.workers`` above 1, a parent process supervises that many workers on one
    port (``_workers.py``); a key generated here is generated once and shared by all.

    Raises:
        ConfigError: A JWT key is unusable, or several workers without a shared backend
            (checked before anything starts).
    """
    verification_keys(settings.jwt_key, settings.jwt_public_key)
    if settings.workers > 1 and settings.backend == "memory":
        raise ConfigError(
            f"--workers {settings.workers} needs a shared backend (--backend redis://...): "
            "in-memory sessions are per process, so each worker would see different sessions"
        )
    if not settings.auth_publish and not settings.auth_subscribe:
        logger.warning("authorisation is off (--no-auth): anyone can publish; local use only")
    elif not settings.jwt_key and not settings.jwt_public_key:
        settings = _with_generated_key(settings, out)
    if settings.workers > 1:
        from ._workers import run_workers

        return run_workers(config, settings, out)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server: RunningServer = await nursery.start(_serve_with_signals, config, settings)
            print(f"trio-sse serving on {server.url} (demo page: {server.url}/)", file=out)
            files = server.open_file_limit
            print(
                f"  open-file limit {files if files is not None else 'unknown'}; at most "
                f"{server.max_sockets} sockets, {server.reserved_sockets} of them reserved for "
                "publishes and health checks",
                file=out,
            )
            out.flush()

    trio.run(main)
    return 0


async def _serve_with_signals(
    config: BroadcasterConfig,
    settings: ServerSettings,
    *,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(config, settings, handle_signals=True, task_status=task_status)


def _with_generated_key(settings: ServerSettings, out: TextIO) -> ServerSettings:
    key = generate_key()
    token = make_token(key, publish=["*"], subscribe=["*"])
    print("No JWT key configured: generated one for this run.", file=out)
    print(f"  TRIO_SSE_JWT_KEY={key}", file=out)
    print(f"  publish token (all sessions): {token}", file=out)
    print(f'  e.g. trio-sse publish --token "{token}" demo greeting \'"hello"\'', file=out)
    from dataclasses import replace

    return replace(settings, jwt_key=key)


def publish(
    url: str, token: str | None, session: str, type: str, data: str, ttl: float | None
) -> str:
    """``trio-sse publish``: POST one event; returns its id."""
    body: dict[str, Any] = {"type": type, "data": _data_value(data)}
    if ttl is not None:
        body["ttl"] = ttl
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = _request("POST", f"{url}/sessions/{session}/events", json=body, headers=headers)
    return str(answer["id"])


def publish_lines(
    url: str,
    token: str | None,
    lines: Iterable[str],
    session: str | None,
    batch_size: int,
    out: TextIO,
) -> int:
    """``trio-sse publish --stdin``: publish NDJSON events, ``batch_size`` per request.

    Each non-blank line is an event object (``{"type": ..., "data": ..., "ttl": ...}``, with
    ``"session"`` unless ``session`` is given). Prints each event's id as its batch is
    accepted; returns how many were published. A refused batch stops the command, naming the
    line of the refused event (the batches before it stay published).
    """
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    batch: list[tuple[int, bytes]] = []
    published = 0

    def send() -> None:
        nonlocal published
        body = b"\n".join(line for _, line in batch)
        try:
            answer = _request("POST", f"{url}/events", content=body, headers=headers)
        except CommandError as error:
            if error.index is None or not 0 <= error.index < len(batch):
                raise
            raise CommandError(f"line {batch[error.index][0]}: {error}") from None
        for event_id in answer["ids"]:
            print(event_id, file=out)
        published += len(batch)
        batch.clear()

    for number, line in enumerate(lines, 1):
        if line.strip():
            batch.append((number, _event_line(number, line, session)))
            if len(batch) >= batch_size:
                send()
    if batch:
        send()
    return published


def _event_line(number: int, line: str, session: str | None) -> bytes:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise CommandError(f"line {number}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError(f"line {number}: an event must be a JSON object")
    if session is not None:
        value.setdefault("session", session)
    return json.dumps(value, separators=(",", ":")).encode()


def stats(url: str) -> dict[str, Any]:
    """``trio-sse stats``: the server's statistics."""
    return _request("GET", f"{url}/stats")


def _data_value(text: str) -> Any:
    """DATA is JSON when it parses as JSON, else plain text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _request(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(method, url, timeout=10.0, **kwargs)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {url}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:200]}
    if response.is_error:
        index = answer.get("index") if isinstance(answer, dict) else None
        raise CommandError(f"{response.status_code}: {answer.get('error', answer)}", index)
    if not isinstance(answer, dict):
        raise CommandError(f"unexpected answer: {answer!r}")
    return answer


async def listen(
    url: str,
    session: str,
    *,
    token: str | None,
    last_event_id: str | None,
    out: TextIO,
    max_events: int | None = None,
) -> None:
    """``trio-sse listen``: print the events of a session, resuming after reconnects.

    Runs :class:`~trio_sse.SSEClient` (backoff, ``Last-Event-ID``, polling fallback) until
    ``max_events`` events were printed, or forever; a refusal (401, 403...) is an error.
    """
    enough = trio.Event()
    printed = 0
    failed = False

    def show(event: MessageEvent) -> None:
        nonlocal printed
        print(f"{event.id}\t{event.type}\t{event.data}", file=out, flush=True)
        printed += 1
        if max_events is not None and printed >= max_events:
            enough.set()

    def report(state: ConnectionState) -> None:
        nonlocal failed
        if state is ConnectionState.FAILED:
            failed = True
            enough.set()
        elif state in (ConnectionState.RECONNECTING, ConnectionState.POLLING):
            print(f"# {state.value}", file=sys.stderr)

    stream_url = f"{url}/sessions/{session}/events"
    async with SSEClient(
        stream_url, token=token, last_event_id=last_event_id, max_retries=None
    ) as client:
        client.on(ANY_EVENT, show)
        client.on_connection_change(report)
        await enough.wait()
    if failed:
        raise CommandError(f"stream refused: {client.last_error}")
