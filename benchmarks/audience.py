"""The subscribers of the load benchmarks: SSE streams read by a process of their own.

Run by ``http_load.py`` and ``compare.py`` (one process or several, each with its share of the
streams), never by hand except for the decoder's self-check::

    .venv/bin/python benchmarks/audience.py --self-test

Why a process of its own, in plain Python: reading 1,000 streams with one trio task each cost
the load client 94-100% of a core at about 50,000 deliveries/s, so the fastest servers were
measured as client-bound. Here one loop waits on ``select.epoll`` (level-triggered) and, for each
socket it reports ready, makes one non-blocking ``recv_into`` of up to ``RECEIVE_SIZE`` (256 KiB)
into a buffer shared by all streams (a plain ``recv`` of that size would allocate, and on glibc
``mmap``, 256 KiB per call), copies what arrived and decodes it. No task switch, no checkpoint
and no timer per read.

Decoding is exact wherever TCP splits the bytes: ``ChunkedDecoder`` strips each chunk's size
line and closing CRLF (it keeps a partial line, or counts the data bytes still due, across
reads; its fast path takes whole chunks from a fresh buffer), and the decoded body is split into
SSE blocks at blank lines (``\\n\\n``), the incomplete tail kept for the next read. A block counts
as a delivery if it is a ``tick`` event (it starts with ``event: tick\\n``) whose first ``data:``
line starts with the current tag and a space; ``retry:`` blocks and ``:`` heartbeats are skipped;
anything else (another tag, a ``reset``, a comment) is an anomaly, counted under its first line;
a stream that ends or breaks is an anomaly too, and is dropped. Counting needs no loop over the
blocks when a read holds ticks only: if the completed part starts with ``event: tick\\n``,
every ``\\n\\n`` in it is followed by ``event: tick\\n``, and it holds as many ``\\ndata: `` as
blocks, each followed by the tag and a space, then every block is a tick of the tag (the servers
write one-line data); this takes four ``bytes.count`` over the part. Otherwise, and when
latencies are wanted, each block is looked at in turn.

Protocol, one line each way (the driver writes to stdin, the audience answers on stdout with
one JSON object per line, ``"event"`` naming it):

- at start: the audience opens ``--streams`` streams to 127.0.0.1:``--port``
  (``GET /sessions/bench/events``, ``OPEN_CONCURRENCY`` at once, the response head must be
  ``200`` and chunked), then writes ``ready`` (or ``error`` with a message, and exits 1). With
  ``--sessions N`` (and ``--first-session K``) stream n subscribes to session
  ``u<(K + n) mod N>`` instead, one stream per session when N is the total count
  (``requests.py``'s per-user workload);
- ``expect <tag> <events> <latencies 0|1>``: a new tally; every stream's count restarts at 0 and
  ticks of another tag become anomalies. Answered by ``expecting`` at once (publish after it),
  then by ``done`` when every stream has ``events`` ticks of the tag, with ``finished_at``
  (``time.perf_counter()``: CLOCK_MONOTONIC, the same clock in every process on Linux),
  ``total`` ticks received and ``reads`` (socket reads that completed at least one block);
- ``report <samples 0|1>``: ``total``, ``reads``, the anomalies since the last report, and the
  latency ``count``, ``p50``, ``p99`` and ``max`` in seconds (latency = ``time.time()`` right
  after the read that completed the event minus the stamp in its data); with ``1``, also
  ``samples``: every latency in whole microseconds, sorted, delta-encoded, zlib-compressed and
  base64-encoded, for a driver that merges several processes;
- ``close``: close every stream and exit 0. The audience also exits when stdin ends.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import resource
import select
import socket
import sys
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

HOST = "127.0.0.1"
SESSION = "bench"
STREAM_PATH = f"/sessions/{SESSION}/events"
STREAM_REQUEST = f"GET {STREAM_PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
SESSION_PREFIX = "u"
"""With ``--sessions N``, the streams subscribe to sessions ``u0`` ... ``u<N-1>``."""
RECEIVE_SIZE = 256 * 1024
OPEN_CONCURRENCY = 64
"""Streams being opened at once (the server's listen backlog is 1024)."""
OPEN_TIMEOUT = 60.0
MAX_HEAD = 16 * 1024
TICK = b"event: tick\n"
DATA_FIELD = b"\ndata: "
RETRY = b"retry: "
HEARTBEAT = b":"
BLANK = b"\n\n"
NEXT_TICK = BLANK + TICK
CRLF = b"\r\n"
Message = dict[str, Any]


class StreamError(Exception):
    """A stream was refused, ended, or broke the protocol."""


def session_name(number: int) -> str:
    """The session of number ``number`` (``--sessions``): ``u<number>``."""
    return f"{SESSION_PREFIX}{number}"


def stream_request(session: str = SESSION) -> bytes:
    """The head of ``GET /sessions/<session>/events``."""
    return f"GET /sessions/{session}/events HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def raise_fd_limit(wanted: int = 4096) -> None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit if it is below ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def check_head(head: bytes, rest: bytes) -> None:
    """Raise :class:`StreamError` unless ``head`` is a ``200`` with a chunked body."""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    if status_line.split(" ")[1:2] != ["200"]:
        raise StreamError(f"{status_line.strip()} {rest[:200]!r}")
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (h.partition(":") for h in header_lines)
    }
    if headers.get("transfer-encoding") != "chunked":
        raise StreamError(f"expected a chunked response, got headers {headers}")


# -- decoding -------------------------------------------------------------------------------


class ChunkedDecoder:
    """Incremental decoder of a ``Transfer-Encoding: chunked`` body; keeps a partial line."""

    __slots__ = ("_buffer", "_crlf", "_left", "ended")

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0
        """Data bytes of the current chunk still to come."""
        self._crlf = False
        """The CRLF that closes the current chunk's data is still to come."""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes in ``data`` (and in what earlier calls kept back)."""
        if self._buffer or self._left or self._crlf:
            buffer = self._buffer + data
            return b"".join(self._decode(buffer, 0, []))
        out: list[bytes] = []
        pos, end = 0, len(data)
        while True:  # the common case: whole chunks, each size line at ``pos``
            line_end = data.find(CRLF, pos)
            if line_end < 0:
                break
            try:
                start, stop = line_end + 2, line_end + 2 + int(data[pos:line_end], 16)
            except ValueError:  # chunk extensions, or not a size: the general path decides
                break
            if stop == line_end + 2 or stop + 2 > end or data[stop : stop + 2] != CRLF:
                break
            out.append(data[start:stop])
            pos = stop + 2
        if pos < end:
            self._decode(data, pos, out)
        else:
            self._buffer = b""
        return b"".join(out)

    def _decode(self, buffer: bytes, pos: int, out: list[bytes]) -> list[bytes]:
        """Decode ``buffer`` from ``pos`` into ``out`` in any state; keep what is incomplete."""
        end = len(buffer)
        while not self.ended:
            if self._left:
                take = min(self._left, end - pos)
                out.append(buffer[pos : pos + take])
                pos += take
                self._left -= take
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if end - pos < 2:
                    break
                if buffer[pos : pos + 2] != CRLF:
                    raise StreamError(f"chunk not closed by CRLF: {buffer[pos : pos + 20]!r}")
                pos += 2
                self._crlf = False
            line_end = buffer.find(CRLF, pos)
            if line_end < 0:
                break
            self._left = _chunk_size(buffer[pos:line_end])
            pos = line_end + 2
            self.ended = self._left == 0
        self._buffer = buffer[pos:]
        return out


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0], 16)
    except ValueError:
        raise StreamError(f"bad chunk size line {line[:40]!r}") from None


class Stream:
    """One event stream: its socket, its decoder, the tail of its body, its ticks received."""

    __slots__ = ("decoder", "received", "sock", "tail")

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock
        self.decoder = ChunkedDecoder()
        self.tail = b""
        self.received = 0

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Decode ``data``: the text so far and where its last complete block ends (or -1)."""
        text = self.decoder.feed(data)
        if self.tail:
            text = self.tail + text
        cut = text.rfind(BLANK)
        self.tail = text[cut + 2 :] if cut >= 0 else text
        if self.decoder.ended:
            blocks = text[:cut].split(BLANK) if cut >= 0 else []
            raise StreamError(f"the response ended after {blocks[-3:]!r}")
        return text, cut


class Tally:
    """The ticks of one tag that a process's streams received."""

    def __init__(
        self,
        tag: bytes,
        expected: int,
        streams: int,
        anomalies: Counter[str],
        latencies: bool,
        done: Callable[[Tally], None],
    ) -> None:
        self.tag = tag
        self.mark = DATA_FIELD + tag + b" "
        self.expected = expected
        self.pending = streams
        self.total = 0
        self.reads = 0
        self.finished_at: float | None = None
        self.anomalies = anomalies
        self.latencies: list[float] | None = [] if latencies else None
        self._done = done
        if streams == 0 and expected > 0:
            self._finish()

    def record(self, stream: Stream, text: bytes, cut: int, now: float) -> None:
        """Count the blocks of ``text[:cut]``, completed by a read of ``stream`` at ``now``."""
        self.reads += 1
        blocks = text.count(BLANK, 0, cut) + 1
        if (
            self.latencies is None
            and text.startswith(TICK)
            and text.count(NEXT_TICK, 0, cut) == blocks - 1
            and text.count(DATA_FIELD, 0, cut) == blocks
            and text.count(self.mark, 0, cut) == blocks
        ):
            got = blocks
        else:
            got = self.record_blocks(text[:cut].split(BLANK), now)
        before = stream.received
        stream.received = before + got
        self.total += got
        if before < self.expected <= before + got:
            self.pending -= 1
            if self.pending == 0:
                self._finish()

    def record_blocks(self, blocks: Iterable[bytes], now: float) -> int:
        """Ticks of the tag among ``blocks``; note the anomalies, and latencies if wanted."""
        got = 0
        for block in blocks:
            if block.startswith(TICK):
                got += self._tick(block, now)
            elif block != HEARTBEAT and not block.startswith(RETRY):
                self.anomalies[block.split(b"\n", 1)[0][:60].decode(errors="replace")] += 1
        return got

    def _tick(self, block: bytes, now: float) -> int:
        at = block.find(DATA_FIELD)
        fields = block[at + len(DATA_FIELD) :].split(b" ", 2) if at >= 0 else []
        if len(fields) < 2:
            self.anomalies[f"tick without tag and stamp: {block[:60]!r}"] += 1
            return 0
        if fields[0] != self.tag:
            self.anomalies[f"tick of scenario {fields[0].decode(errors='replace')!r}"] += 1
            return 0
        if self.latencies is not None:
            self.latencies.append(now - float(fields[1]))
        return 1

    def _finish(self) -> None:
        self.finished_at = time.perf_counter()
        self._done(self)

    def summary(self, samples: bool) -> Message:
        """The ``report`` answer, but for the anomalies."""
        ordered = sorted(self.latencies or ())
        latency: Message = {"count": len(ordered)}
        if ordered:
            latency.update(
                p50=percentile(ordered, 0.5), p99=percentile(ordered, 0.99), max=ordered[-1]
            )
        if samples:
            latency["samples"] = pack_latencies(ordered)
        return {"tag": self.tag.decode(), "total": self.total, "reads": self.reads, **latency}


def pack_latencies(ordered: list[float]) -> str:
    """Sorted latencies in whole microseconds, delta-encoded, compressed, as base64 text."""
    micros = [round(x * 1e6) for x in ordered]
    deltas = array("q", [b - a for a, b in zip([0, *micros], micros, strict=False)])
    return base64.b64encode(zlib.compress(deltas.tobytes(), 6)).decode()


def unpack_latencies(text: str) -> list[float]:
    """The latencies that :func:`pack_latencies` packed, in seconds, sorted."""
    deltas = array("q")
    deltas.frombytes(zlib.decompress(base64.b64decode(text)))
    out, total = [], 0
    for delta in deltas:
        total += delta
        out.append(total / 1e6)
    return out


# -- the process ----------------------------------------------------------------------------


class Opening:
    """A stream whose response head is still being read."""

    def __init__(self, port: int, request: bytes = STREAM_REQUEST) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10.0)
        self.sock.sendall(request)
        self.sock.setblocking(False)
        self.data = b""

    def receive(self) -> tuple[bytes, bytes] | None:
        """Read what is there: the head and the bytes after it once the head is complete."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        if not chunk or len(self.data) > MAX_HEAD:
            raise StreamError(f"no response head: {self.data[:200]!r}")
        self.data += chunk
        if b"\r\n\r\n" not in self.data:
            return None
        head, rest = self.data.split(b"\r\n\r\n", 1)
        return head, rest


class Audience:
    """Every stream of this process, read in one ``epoll`` loop; commands come on stdin."""

    def __init__(self, port: int, count: int, sessions: int = 0, first: int = 0) -> None:
        self.port = port
        self.count = count
        self.sessions = sessions
        """0: every stream on ``SESSION``; else stream n on session ``(first + n) % sessions``."""
        self.first = first
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.anomalies: Counter[str] = Counter()
        self.tally = self.new_tally(b"", 0, latencies=False)
        self.buffer = bytearray(RECEIVE_SIZE)
        self.view = memoryview(self.buffer)
        self.stdin = sys.stdin.fileno()
        self.commands = b""
        self.running = True

    def new_tally(self, tag: bytes, expected: int, *, latencies: bool) -> Tally:
        streams = len(self.streams)
        return Tally(tag, expected, streams, self.anomalies, latencies, self.announce)

    def announce(self, tally: Tally) -> None:
        say(
            event="done",
            tag=tally.tag.decode(),
            finished_at=tally.finished_at,
            total=tally.total,
            reads=tally.reads,
        )

    def open_streams(self) -> None:
        """Open ``count`` streams, ``OPEN_CONCURRENCY`` at a time; raise if one is refused.

        One that ends once open is dropped as an anomaly, as it would be later.
        """
        deadline = time.monotonic() + OPEN_TIMEOUT
        opening: dict[int, Opening] = {}
        started = 0
        while started < self.count or opening:
            while started < self.count and len(opening) < OPEN_CONCURRENCY:
                new = Opening(self.port, self.request(started))
                opening[new.sock.fileno()] = new
                self.epoll.register(new.sock.fileno(), select.EPOLLIN)
                started += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StreamError(f"{len(self.streams)} of {self.count} streams open in time")
            for fd, _ in self.epoll.poll(remaining):
                if fd in opening:
                    self.open_one(opening, fd)
                else:
                    self.read(fd, self.streams[fd])

    def request(self, number: int) -> bytes:
        """The request of this process's stream ``number``."""
        if not self.sessions:
            return STREAM_REQUEST
        return stream_request(session_name((self.first + number) % self.sessions))

    def open_one(self, opening: dict[int, Opening], fd: int) -> None:
        done = opening[fd].receive()
        if done is None:
            return
        head, rest = done
        check_head(head, rest)
        stream = self.streams[fd] = Stream(opening.pop(fd).sock)
        if rest:
            self.take(fd, stream, rest, time.time())

    def run(self) -> None:
        """Read until ``close`` or the end of stdin."""
        os.set_blocking(self.stdin, False)
        self.epoll.register(self.stdin, select.EPOLLIN)
        poll, streams, read = self.epoll.poll, self.streams, self.read
        while self.running:
            for fd, _ in poll():
                stream = streams.get(fd)
                if stream is not None:
                    read(fd, stream)
                elif fd == self.stdin:
                    self.read_commands()

    def read(self, fd: int, stream: Stream) -> None:
        try:
            size = stream.sock.recv_into(self.buffer)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError as error:
            self.lose(fd, f"{type(error).__name__}: {error}")
            return
        if not size:
            self.lose(fd, "the server closed the connection")
            return
        self.take(fd, stream, bytes(self.view[:size]), time.time())

    def take(self, fd: int, stream: Stream, data: bytes, now: float) -> None:
        try:
            text, cut = stream.feed(data)
        except StreamError as error:
            self.lose(fd, str(error))
            return
        if cut >= 0:
            self.tally.record(stream, text, cut, now)

    def lose(self, fd: int, why: str) -> None:
        """Drop a stream that ended or broke: an anomaly."""
        self.anomalies[f"stream ended: {why}"[:200]] += 1
        self.epoll.unregister(fd)
        stream = self.streams.pop(fd)
        if stream.sock is not None:
            stream.sock.close()

    def read_commands(self) -> None:
        data = os.read(self.stdin, 65536)
        if not data:
            self.running = False
            return
        self.commands += data
        while self.running and b"\n" in self.commands:
            line, _, self.commands = self.commands.partition(b"\n")
            self.command(line.decode().split())

    def command(self, words: list[str]) -> None:
        match words:
            case ["expect", tag, events, latencies]:
                self.expect(tag.encode(), int(events), latencies=latencies == "1")
            case ["report", samples]:
                self.report(samples=samples == "1")
            case ["close"]:
                self.running = False
            case _:
                say(event="error", message=f"unknown command {words!r}")

    def expect(self, tag: bytes, events: int, *, latencies: bool) -> None:
        for stream in self.streams.values():
            stream.received = 0
        say(event="expecting", tag=tag.decode())  # before a ``done`` that comes at once
        self.tally = self.new_tally(tag, events, latencies=latencies)

    def report(self, *, samples: bool) -> None:
        anomalies = dict(self.anomalies)
        self.anomalies.clear()
        say(event="report", anomalies=anomalies, **self.tally.summary(samples))

    def close(self) -> None:
        for stream in self.streams.values():
            if stream.sock is not None:
                stream.sock.close()
        self.streams.clear()
        self.epoll.close()


def say(**message: Any) -> None:
    """One JSON line to the driver."""
    sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
    sys.stdout.buffer.flush()


def serve(port: int, count: int, sessions: int = 0, first: int = 0) -> int:
    """The audience process: open the streams, say ``ready``, obey commands; exit code."""
    raise_fd_limit(count + 64)
    audience = Audience(port, count, sessions, first)
    try:
        audience.open_streams()
    except (StreamError, OSError) as error:
        say(event="error", message=f"opening streams: {type(error).__name__}: {error}")
        return 1
    say(event="ready", streams=len(audience.streams), pid=os.getpid())
    try:
        audience.run()
    finally:
        audience.close()
    return 0


# -- self-test ------------------------------------------------------------------------------


OTHER_TICK = b"event: tick\nid: 0\ndata: other 1.0 xx"
RESET = b"event: reset\ndata: t1 1.0 x"


def sample_body(tag: bytes, ticks: int, rng: random.Random) -> tuple[bytes, list[bytes]]:
    """A chunked body of ``ticks`` ticks among other blocks, in chunks of random sizes."""
    blocks = [b"retry: 3000"]
    for n in range(ticks):
        blocks.append(b"event: tick\nid: %d\ndata: %s %.6f xxxx" % (n, tag, time.time()))
        if n % 7 == 3:
            blocks.append(HEARTBEAT)
        if n % 11 == 5:
            blocks.append(OTHER_TICK)
        if n % 13 == 6:
            blocks.append(RESET)
    blocks.append(b": slow consumer")
    text = b"".join(block + BLANK for block in blocks)
    body, pos = [], 0
    while pos < len(text):
        size = rng.choice((1, 2, 17, 90, 300, 4096))
        ext = b";x=1" if rng.random() < 0.1 else b""
        body.append(b"%x%s\r\n%s\r\n" % (len(text[pos : pos + size]), ext, text[pos : pos + size]))
        pos += size
    return b"".join(body), blocks


def split_randomly(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, len(data) // largest + 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def check(condition: object, failure: object) -> None:
    """``assert``, kept under ``python -O``."""
    if not condition:
        raise AssertionError(failure)


def decode_pieces(pieces: list[bytes], tag: bytes, latencies: bool) -> tuple[Tally, list[bytes]]:
    """Feed ``pieces`` to one stream: its tally, and every complete block it decoded."""
    tally = Tally(tag, 10**9, 1, Counter(), latencies, lambda _: None)
    stream, blocks = Stream(None), []
    for piece in pieces:
        text, cut = stream.feed(piece)
        if cut >= 0:
            blocks += text[:cut].split(BLANK)
            tally.record(stream, text, cut, time.time())
    check(stream.tail == b"", f"left over: {stream.tail[:60]!r}")
    check(tally.total == stream.received, (tally.total, stream.received))
    return tally, blocks


def self_test(rounds: int = 200) -> None:
    """Decode a sample body split every which way: the blocks and counts must never change."""
    rng = random.Random(1)
    tag = b"t1"
    body, blocks = sample_body(tag, 300, rng)
    want = Counter({"tick of scenario 'other'": blocks.count(OTHER_TICK)})
    want.update({"event: reset": blocks.count(RESET), ": slow consumer": 1})
    splits = [[body], [body[n : n + 1] for n in range(len(body))]]
    splits += [split_randomly(body, rng, rng.choice((3, 50, 700))) for _ in range(rounds)]
    for pieces in splits:
        for latencies in (False, True):
            tally, decoded = decode_pieces(pieces, tag, latencies)
            check(decoded == blocks, f"other blocks from {len(pieces)} pieces")
            check(tally.total == 300, (tally.total, len(pieces)))
            check(tally.anomalies == want, tally.anomalies)
            check(len(tally.latencies or [0] * 300) == 300, "latencies missing")
    check_fast_path(tag)
    check_errors()
    check_packing(rng)
    print(f"audience self-test: {len(splits) * 2} decodings of a {len(body):,}-byte body agree")


def check_fast_path(tag: bytes) -> None:
    ticks = b"".join(b"event: tick\nid: %d\ndata: t1 1.5 xx\n\n" % n for n in range(5))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (ticks, ticks[:7], ticks[7:]))
    tally, decoded = decode_pieces([chunks], tag, False)
    check(tally.total == 10 and tally.reads == 1 and not tally.anomalies, tally.anomalies)
    check(len(decoded) == 10, decoded)


def check_errors() -> None:
    stream = Stream(None)
    stream.feed(b"5\r\nab")
    check(stream.feed(b"c\n\n\r\n") == (b"abc\n\n", 3), "a chunk split in its data")
    for bad in (b"zz\r\n", b"3\r\nabcXY", b"2\r\n\n\n\r\n0\r\n\r\n"):
        try:
            Stream(None).feed(bad)
        except StreamError:
            continue
        raise AssertionError(f"{bad!r} decoded without an error")


def check_packing(rng: random.Random) -> None:
    ordered = sorted(rng.uniform(0.0, 3.0) for _ in range(5000))
    back = unpack_latencies(pack_latencies(ordered))
    check(len(back) == len(ordered), "latencies lost")
    check(all(abs(a - b) <= 1e-6 for a, b in zip(ordered, back, strict=True)), "latencies")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, help="the server's port on 127.0.0.1")
    parser.add_argument("--streams", type=int, default=0, help="streams to open")
    parser.add_argument(
        "--sessions",
        type=int,
        default=0,
        help=f"spread the streams over sessions {SESSION_PREFIX}0.. (default 0: all on {SESSION})",
    )
    parser.add_argument(
        "--first-session", type=int, default=0, help="session number of the first stream"
    )
    parser.add_argument("--self-test", action="store_true", help="check the decoder and exit")
    args = parser.parse_args(argv)
    if args.self_test:
        self_test()
        return 0
    if args.port is None:
        parser.error("--port is required")
    return serve(args.port, args.streams, args.sessions, args.first_session)


if __name__ == "__main__":
    sys.exit(main())
