"""Command-line entry point: argument parsing only; the work lives in ``_commands.py``.

Settings come, each layer overriding the one before, from the defaults, the ``--config`` TOML
file (tables ``[broadcaster]`` and ``[server]``), ``TRIO_SSE_*`` environment variables, and
flags (one per setting: ``--max-queue-size``, ``--heartbeat-interval``...).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import trio

from ._config import BroadcasterConfig, Setting, Settings, load_toml, specification
from ._exceptions import ConfigError
from ._settings import ServerSettings
from ._settings_doc import default_text, type_text

DEFAULT_URL = "http://127.0.0.1:8000"
_SETTING_TYPES: tuple[type[Settings], ...] = (BroadcasterConfig, ServerSettings)
_S = TypeVar("_S", bound=Settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-sse",
        description="Server-Sent Events hub on Trio: bounded broadcaster, provable cleanup.",
        epilog="Run 'trio-sse COMMAND --help' for the options of each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(commands)
    _client_parsers(commands)
    demo = commands.add_parser(
        "demo", help="in-process demo: subscribe, publish, resume from an id, print stats"
    )
    demo.add_argument("--config", metavar="FILE", help="TOML settings file")
    demo.add_argument("--events", type=int, default=5, help="events to publish (default 5)")
    return parser


def _serve_parser(commands: Any) -> argparse.ArgumentParser:
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="run the SSE hub over HTTP",
        description="Run the SSE hub. Without --jwt-key (or TRIO_SSE_JWT_KEY) a key is "
        "generated and a ready publish token printed; --no-auth turns authorisation off.",
    )
    serve.add_argument("--config", metavar="FILE", help="TOML file: [broadcaster] and [server]")
    serve.add_argument("--no-auth", action="store_true", help="no authorisation (local use)")
    serve.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    for kind in _SETTING_TYPES:
        group = serve.add_argument_group(f"{kind.__name__} settings (also TRIO_SSE_<NAME>)")
        for spec in specification(kind):
            group.add_argument(
                spec.flag, dest=f"set_{spec.name}", metavar="VALUE", help=flag_help(spec)
            )
    return serve


def flag_help(spec: Setting) -> str:
    """The ``--help`` text of a setting's flag: its effect, type and default, as plain text."""
    details = f"{type_text(spec)}, default {default_text(spec)}"
    if spec.unit != "-":
        details += f", {spec.unit}"
    return f"{spec.effect} ({details})".replace("`", "").replace("%", "%%")


def _client_parsers(commands: Any) -> None:
    url_help = f"server URL (default $TRIO_SSE_URL or {DEFAULT_URL})"
    publish = commands.add_parser(
        "publish",
        help="publish one event over HTTP, or many from stdin (--stdin)",
        description="Publish SESSION TYPE DATA, or with --stdin one event per line of "
        'standard input (NDJSON: {"type": ..., "data": ..., "ttl": ..., "session": ...}; '
        "SESSION, if given, is the default session), sent in batches.",
    )
    publish.add_argument("session", nargs="?")
    publish.add_argument("type", nargs="?")
    publish.add_argument("data", nargs="?", help="JSON if it parses as JSON, else text")
    publish.add_argument("--ttl", type=float, help="seconds the event stays in history")
    publish.add_argument("--stdin", action="store_true", help="read NDJSON events from stdin")
    publish.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="with --stdin: events per request (default 1000, the server's max_batch_events)",
    )
    listen = commands.add_parser("listen", help="print a session's events, resuming on reconnect")
    listen.add_argument("session")
    listen.add_argument("--last-event-id", help="resume after this id")
    listen.add_argument("--max-events", type=int, help="stop after this many events")
    stats = commands.add_parser("stats", help="print the server's statistics")
    for command in (publish, listen, stats):
        command.add_argument(
            "--url", default=os.environ.get("TRIO_SSE_URL", DEFAULT_URL), help=url_help
        )
    for command in (publish, listen):
        command.add_argument(
            "--token",
            default=os.environ.get("TRIO_SSE_TOKEN"),
            help="bearer token ($TRIO_SSE_TOKEN)",
        )


def load_settings(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[BroadcasterConfig, ServerSettings]:
    """Defaults < ``--config`` file < environment < flags."""
    tables: dict[str, Any] = {}
    if getattr(args, "config", None):
        tables = load_toml(args.config)
        unknown = sorted(set(tables) - {kind.toml_table for kind in _SETTING_TYPES})
        if unknown:
            raise ConfigError(f"unknown table(s) in {args.config!r}: {', '.join(unknown)}")
    config = _layered(BroadcasterConfig, tables, environ, args)
    settings = _layered(ServerSettings, tables, environ, args)
    if getattr(args, "no_auth", False):
        settings = settings.replace(auth_publish=False, auth_subscribe=False)
    return config, settings


def _layered(
    kind: type[_S], tables: Mapping[str, Any], environ: Mapping[str, str], args: argparse.Namespace
) -> _S:
    settings = kind.from_env(environ, base=_from_table(kind, tables))
    return settings.replace(**_flags(args, kind))


def _from_table(kind: type[_S], tables: Mapping[str, Any]) -> _S:
    table = tables.get(kind.toml_table, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{kind.toml_table}] must be a table")
    return kind.from_mapping(table)


def _flags(args: argparse.Namespace, kind: type[Settings]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in specification(kind):
        raw = getattr(args, f"set_{spec.name}", None)
        if raw is not None:
            values[spec.name] = spec.parse(spec.flag, raw)
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    from ._commands import CommandError

    try:
        return _run(args)
    except ConfigError as exc:
        print(f"trio-sse: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"trio-sse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from . import _commands

    if args.command == "serve":
        config, settings = load_settings(args, os.environ)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
        return _commands.run_server(config, settings, sys.stdout)
    elif args.command == "publish":
        return _publish(args)
    elif args.command == "listen":
        trio.run(
            lambda: _commands.listen(
                args.url,
                args.session,
                token=args.token,
                last_event_id=args.last_event_id,
                out=sys.stdout,
                max_events=args.max_events,
            )
        )
    elif args.command == "stats":
        import json

        print(json.dumps(_commands.stats(args.url), indent=2))
    elif args.command == "demo":
        return _demo(args)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from . import _commands

    if args.stdin:
        if args.type is not None or args.ttl is not None or args.batch_size < 1:
            print(
                "trio-sse: --stdin takes at most a SESSION and a --batch-size >= 1", file=sys.stderr
            )
            return 2
        _commands.publish_lines(
            args.url, args.token, sys.stdin, args.session, args.batch_size, sys.stdout
        )
        return 0
    if args.data is None:
        print("trio-sse: publish needs SESSION TYPE DATA (or --stdin)", file=sys.stderr)
        return 2
    print(_commands.publish(args.url, args.token, args.session, args.type, args.data, args.ttl))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import main as demo_main

    if args.events < 1:
        print("trio-sse: --events must be at least 1", file=sys.stderr)
        return 2
    config, _ = load_settings(args, os.environ)
    demo_main(config, events=args.events)
    return 0
