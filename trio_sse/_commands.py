"""What the command-line tools do; ``_cli.py`` only parses their arguments."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, TextIO, cast

import httpx
import trio

from ._auth import generate_key, make_token
from ._config import BroadcasterConfig
from ._protocol import EventStreamParser, MessageEvent
from ._serve import RunningServer, serve
from ._settings import ServerSettings

logger = logging.getLogger("trio_sse")


class CommandError(Exception):
    """A failure to report on one line, with exit status 1."""


def run_server(config: BroadcasterConfig, settings: ServerSettings, out: TextIO) -> None:
    """``trio-sse serve``: run until SIGINT or SIGTERM."""
    if not settings.auth_publish and not settings.auth_subscribe:
        logger.warning("authorisation is off (--no-auth): anyone can publish; local use only")
    elif not settings.jwt_key and not settings.jwt_public_key:
        settings = _with_generated_key(settings, out)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server: RunningServer = await nursery.start(_serve_with_signals, config, settings)
            print(f"trio-sse serving on {server.url} (demo page: {server.url}/)", file=out)
            out.flush()

    trio.run(main)


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
        raise CommandError(f"{response.status_code}: {answer.get('error', answer)}")
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
    """``trio-sse listen``: print the events of a session, resuming after reconnects."""
    follower = _Follower(f"{url}/sessions/{session}/events", token, last_event_id, out, max_events)
    await follower.run()


class _Follower:
    """Follows one stream across reconnects with ``Last-Event-ID`` and capped backoff."""

    def __init__(
        self, url: str, token: str | None, cursor: str | None, out: TextIO, limit: int | None
    ) -> None:
        self.url, self.token, self.cursor, self.out, self.limit = url, token, cursor, out, limit
        self.printed = 0
        self.delay = 1.0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
            while self.limit is None or self.printed < self.limit:
                try:
                    await self._follow(client)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code < 500:
                        status = exc.response.status_code
                        raise CommandError(f"{status}: {exc.response.text}") from None
                except httpx.HTTPError as exc:
                    print(
                        f"# disconnected ({exc.__class__.__name__}); reconnecting", file=sys.stderr
                    )
                if self.limit is not None and self.printed >= self.limit:
                    return
                await trio.sleep(self.delay)
                self.delay = min(self.delay * 2, 30.0)

    async def _follow(self, client: httpx.AsyncClient) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.cursor:
            headers["Last-Event-ID"] = self.cursor
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        parser = EventStreamParser()
        async with client.stream("GET", self.url, headers=headers) as response:
            response.raise_for_status()
            chunks_iterator = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
            async with aclosing(chunks_iterator) as chunks:
                async for chunk in chunks:
                    for event in parser.feed(chunk):
                        self._print(event)
                        if self.limit is not None and self.printed >= self.limit:
                            return
                    if parser.retry is not None:
                        self.delay = parser.retry / 1000
        self.delay = parser.retry / 1000 if parser.retry is not None else 1.0

    def _print(self, event: MessageEvent) -> None:
        self.cursor = event.id or self.cursor
        self.printed += 1
        print(f"{event.id}\t{event.type}\t{event.data}", file=self.out, flush=True)
