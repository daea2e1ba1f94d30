"""Command line: ``memory-router [serve] | explain | check | memories | top``.

- ``serve`` (the default) runs the proxy on uvicorn.
- ``explain -H 'Name: value' ...`` prints the decision for some headers, offline.
- ``check`` validates a config and prints its rule table.
- ``top [--url URL]`` shows a running router's traffic per client, refreshed in place.
- ``memories list|search|forget --user-id ID`` shows or removes one id's memories in
  the configured backend (the local file, or Supermemory's API with the same key).
  It is an operator's tool: it names any id, where the endpoints act on the caller's.

Exit codes: 0 success; 1 the headers given to ``explain`` are refused (the
proxy would answer them with the status printed), or ``memories forget`` found
nothing by that id, or the memory backend failed, or ``top --once`` could not read
the stats; 2 bad settings, bad config, a missing optional package, no memory backend
to ask, or bad usage; 141 the reader of the output went away before it was all
written (``memory-router check | head -1``).

Which rules file ``serve``, ``explain`` and ``check`` use, and why, is
``router.config_source``'s choice; each of them prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from router import __version__
from router.config_source import ConfigSource, find_config
from router.errors import error_for
from router.exceptions import MemoryBackendError, RequestRefused, SetupError
from router.headers import memory_header_names
from router.memory.backend import Memory
from router.memory.factory import open_admin
from router.memory_router import MemoryRouter
from router.rules import RoutingRules
from router.settings import LOG_LEVELS, Settings, load_settings
from router.user_ids import USER_ID_RULE, is_valid_user_id

COMMANDS = ("serve", "explain", "check", "memories", "top")
EXIT_OK, EXIT_REFUSED, EXIT_CONFIG = 0, 1, 2
# What a shell reports for a command killed by SIGPIPE (128 + 13): the reader of its
# output went away (``memory-router check | head -1``).
EXIT_BROKEN_PIPE = 141
# What every key in .env.example holds until it is replaced.
PLACEHOLDER = "REPLACE_ME"


CONFIG_HELP = (
    "routing config YAML (env MEMORY_ROUTER_CONFIG; else ./router/config.yaml in a "
    "checkout, else ~/.config/memory-router/config.yaml, else the packaged rules)"
)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memory-router",
        description="Sidecar proxy in front of LiteLLM that gives each AI client its own "
        "Supermemory user id.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Without a command the router serves, so the server's flags belong in this help
    # too. They are only shown here: main() hands every server flag to ``serve``.
    _add_serve_flags(
        parser.add_argument_group(
            "server options",
            "memory-router with no command (or `memory-router serve`) runs the proxy",
        ),
        default=argparse.SUPPRESS,
    )
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the proxy (the default command)")
    _add_serve_flags(serve)

    explain = commands.add_parser("explain", help="show which user id some headers get")
    explain.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header; repeat for more",
    )
    explain.add_argument("--config", help=CONFIG_HELP)
    explain.add_argument("--json", action="store_true", help="print JSON")

    check = commands.add_parser("check", help="validate a config and print its rules")
    check.add_argument("--config", help=CONFIG_HELP)

    memories = commands.add_parser(
        "memories",
        help="list, search or forget one id's memories",
        description="One id's memories in the backend MEMORY_ROUTER_MEMORY_BACKEND names "
        "(the local file, or Supermemory's API with SUPERMEMORY_API_KEY).",
    )
    actions = memories.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the id's memories, newest first")
    searching = actions.add_parser("search", help="the id's memories that match a query")
    searching.add_argument("query", help="what to look for")
    for sub in (listing, searching):
        sub.add_argument("--limit", type=int, default=20, help="at most this many (1-100; 20)")
        sub.add_argument("--json", action="store_true", help="print JSON")
    forget = actions.add_parser("forget", help="remove memories by id, or all of them")
    forget.add_argument("memory_ids", nargs="*", metavar="MEMORY_ID", help="ids from list")
    forget.add_argument("--all", action="store_true", help="remove every memory of the id")
    for sub in (listing, searching, forget):
        sub.add_argument("--user-id", required=True, type=_user_id, help="whose memories")
    top = commands.add_parser(
        "top",
        help="per-client traffic of a running router, refreshed in the terminal",
        description="The dashboard's table in the terminal, read from a running router's "
        "/memory-routing/stats.",
    )
    top.add_argument(
        "--url",
        help="the router's base URL (default: http://127.0.0.1:<MEMORY_ROUTER_PORT or 8765>)",
    )
    top.add_argument(
        "--token",
        help="bearer token for a protected router (env MEMORY_ROUTER_CONTROL_TOKEN)",
    )
    top.add_argument(
        "--window",
        type=int,
        default=300,
        help="seconds the rates and percentiles cover (10-3600; 300)",
    )
    top.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (2)"
    )
    top.add_argument("--once", action="store_true", help="print one table and exit")
    return parser


def _add_serve_flags(group: Any, default: Any = None) -> None:
    """The server's flags, on the ``serve`` parser or a group of the top-level one."""
    group.add_argument(
        "--host", default=default, help="address to listen on (env MEMORY_ROUTER_HOST; 127.0.0.1)"
    )
    group.add_argument(
        "--port", type=int, default=default, help="port to listen on (env MEMORY_ROUTER_PORT; 8765)"
    )
    group.add_argument(
        "--litellm-url",
        default=default,
        help="LiteLLM proxy base URL (env LITELLM_URL; http://localhost:4000)",
    )
    group.add_argument("--config", default=default, help=CONFIG_HELP)
    group.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help="log level (env LOG_LEVEL; INFO)",
    )


def _user_id(text: str) -> str:
    if not is_valid_user_id(text):
        raise argparse.ArgumentTypeError(f"invalid user id {text!r}: must be {USER_ID_RULE}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """The ``memory-router`` command. A reader that goes away early (``| head``) ends it
    quietly with ``EXIT_BROKEN_PIPE``, whichever command was printing."""
    try:
        try:
            code = _main(argv)
        except SystemExit:  # argparse's --help, --version and usage errors
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # here, where a broken pipe can still be caught
    except BrokenPipeError:
        # Python would flush stdout again at exit and fail the same way: point it at
        # /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "explain":
            return explain(args)
        if args.command == "check":
            return check(args)
        if args.command == "top":
            return top(args, parser)
        if args.command == "memories":
            if args.action == "forget" and bool(args.memory_ids) == args.all:
                parser.error("memories forget: give MEMORY_ID... or --all, not both")
            return memories(args)
        return serve(args)
    except SetupError as exc:
        print(f"memory-router: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def top(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from router.top import run

    if not 10 <= args.window <= 3600:
        parser.error("top: --window must be from 10 to 3600 seconds")
    if args.interval <= 0:
        parser.error("top: --interval must be more than 0")
    url, token = args.url, args.token
    if url is None or token is None:
        settings = load_settings()
        if url is None:
            url = f"http://127.0.0.1:{settings.port}"
        if token is None and settings.control_token is not None:
            token = settings.control_token.get_secret_value()
    return run(url, token=token, window=args.window, interval=args.interval, once=args.once)


def config_source(settings: Settings, flag: str | None) -> ConfigSource:
    """The rules file a command runs: ``--config``, else what ``settings`` hold from the
    environment, else the checkout's, the user's or the packaged one."""
    return find_config(settings.config, from_flag=flag is not None)


def _router_for(config: str | None) -> tuple[Settings, ConfigSource, MemoryRouter]:
    settings = load_settings(config=config)
    source = config_source(settings, config)
    return settings, source, MemoryRouter(source.path)


def explain(args: argparse.Namespace) -> int:
    settings, source, router = _router_for(args.config)
    headers: dict[str, str] = {}
    for name, value in args.headers:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    try:
        info = router.get_routing_info(headers)
    except RequestRefused as exc:
        error = error_for(exc)
        print(f"refused (HTTP {error.status} {error.code}): {error.message}", file=sys.stderr)
        return EXIT_REFUSED
    injected = memory_header_names(
        settings.supermemory_key,
        litellm_end_user=settings.litellm_end_user_header,
        supermemory=settings.supermemory_headers,
    )
    info["config"] = {**info["config"], **source.as_dict()}
    if args.json:
        print(json.dumps({**info, "injected_headers": injected}, indent=2))
        return EXIT_OK
    print(f"user_id:  {info['user_id']}")
    print(f"source:   {info['source']}")
    print(f"reason:   {info['reason']}")
    matched: dict[str, Any] | None = info["matched_pattern"]
    if matched is not None:
        print(
            f"rule:     #{matched['index'] + 1} header={matched['header']} "
            f"pattern={matched['pattern']}"
        )
    print(f"config:   {info['config']['path']} (sha256 {info['config']['sha256']})")
    print(f"from:     {source.origin}: {source.reason}")
    print(f"injects:  {', '.join(injected) or '-'}")
    print(f"memory:   {settings.memory_backend}")
    return EXIT_OK


def _rule_table(rules: RoutingRules) -> list[str]:
    rows = [("#", "header", "pattern", "user_id")]
    rows += [
        (str(p.index + 1), p.rule.header, p.rule.pattern, p.rule.user_id) for p in rules.patterns
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]


def check(args: argparse.Namespace) -> int:
    _, source, router = _router_for(args.config)
    rules = router.rules
    print(f"config:         {rules.source} (sha256 {rules.digest})")
    print(f"from:           {source.origin}: {source.reason}")
    print(f"custom header:  {rules.custom_header}")
    print(f"default:        {rules.default_user_id}")
    for line in _rule_table(rules):
        print(line)
    print(f"OK: {len(rules.patterns)} rule(s)")
    return EXIT_OK


def memories(args: argparse.Namespace) -> int:
    settings = load_settings()
    admin = open_admin(settings)
    if admin is None:
        off = settings.memory_backend == "off"
        why = "memory is off" if off else "SUPERMEMORY_API_KEY is unset"
        print(
            f"memory-router: no memories to reach: MEMORY_ROUTER_MEMORY_BACKEND="
            f"{settings.memory_backend} and {why}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    user_id: str = args.user_id

    async def run() -> int:
        try:
            if args.action == "forget":
                if args.all:
                    deleted = await admin.forget_all(user_id)
                    print(f"forgot {deleted} memor{'y' if deleted == 1 else 'ies'} of {user_id}")
                    return EXIT_OK
                missing = [m for m in args.memory_ids if not await admin.forget(user_id, m)]
                for memory_id in args.memory_ids:
                    state = "not found" if memory_id in missing else "forgotten"
                    print(f"{memory_id}: {state}")
                return EXIT_REFUSED if missing else EXIT_OK
            if args.action == "search":
                found = await admin.search(user_id, args.query, args.limit)
            else:
                found = await admin.list(user_id, args.limit)
            _print_memories(found, user_id, settings.memory_backend, as_json=args.json)
            return EXIT_OK
        finally:
            await admin.aclose()

    try:
        return asyncio.run(run())
    except MemoryBackendError as exc:
        print(f"memory-router: {settings.memory_backend}: {exc}", file=sys.stderr)
        return EXIT_REFUSED


def _print_memories(found: list[Memory], user_id: str, backend: str, *, as_json: bool) -> None:
    if as_json:
        items = [
            {
                "id": m.id,
                "text": m.text,
                "score": m.score,
                "created_at": m.created_at,
                "conversation_id": m.conversation_id,
            }
            for m in found
        ]
        print(json.dumps({"user_id": user_id, "backend": backend, "memories": items}, indent=2))
        return
    print(f"{len(found)} memor{'y' if len(found) == 1 else 'ies'} of {user_id} ({backend})")
    for m in found:
        when = f"  {m.created_at}" if m.created_at else ""
        print(f"\n{m.id}{when}")
        for line in m.text.splitlines() or [""]:
            print(f"  {line}")


def serve_settings(args: argparse.Namespace) -> Settings:
    """Settings for ``serve``: its flags over the environment and ``.env``."""
    return load_settings(
        host=args.host,
        port=args.port,
        litellm_url=args.litellm_url,
        config=args.config,
        log_level=args.log_level,
    )


def serve(args: argparse.Namespace) -> int:
    from router.app import create_app
    from router.logs import LOGGER_NAME, configure_logging
    from router.server import run

    settings = serve_settings(args)
    configure_logging(settings.log_level_number, settings.secrets)
    log = logging.getLogger(LOGGER_NAME)
    source = config_source(settings, args.config)
    router = MemoryRouter(source.path)
    rules = router.rules
    _warn_about_the_key(settings, log)
    _warn_about_the_master_key(settings, log)
    log.info(
        "memory-router %s on http://%s:%d -> %s; config %s, %d rules, default %s, "
        "rate limits: %s; memory %s",
        __version__,
        settings.host,
        settings.port,
        settings.litellm_url,
        source.describe(),
        len(rules.patterns),
        rules.default_user_id,
        rules.limits.describe(),
        _memory_summary(settings),
    )
    app = create_app(settings, router=router, logger=log, config_source=source)
    return EXIT_OK if run(app, settings) else EXIT_CONFIG


def _memory_summary(settings: Settings) -> str:
    backend = settings.memory_backend
    if backend == "local":
        return f"local ({settings.memory_local_path})"
    if backend == "supermemory-api":
        return f"supermemory-api ({settings.memory_api_url})"
    if backend == "off":
        return "off (identity and metrics only)"
    return "supermemory-router (headers for Supermemory's proxy)"


def _warn_about_the_key(settings: Settings, log: logging.Logger) -> None:
    key = settings.supermemory_key
    if settings.memory_backend in ("local", "off"):
        if key is not None:
            log.info("memory backend %s: SUPERMEMORY_API_KEY is not used", settings.memory_backend)
        return
    if key is None:
        log.warning(
            "SUPERMEMORY_API_KEY is not set: requests will carry x-sm-user-id but no "
            "x-supermemory-api-key, and Supermemory will not store memories"
        )
    elif PLACEHOLDER in key:
        log.warning(
            "SUPERMEMORY_API_KEY is still the placeholder from .env.example: "
            "Supermemory will reject every request; put your key in .env"
        )


def _warn_about_the_master_key(settings: Settings, log: logging.Logger) -> None:
    """LiteLLM's key is not the router's business, but the placeholder from .env.example
    is public: say so wherever the router can see it (the environment or .env)."""
    key = settings.litellm_master_key
    if key is not None and PLACEHOLDER in key.get_secret_value():
        log.warning(
            "LITELLM_MASTER_KEY is still the placeholder from .env.example, which anyone "
            "can read: generate a key of your own (see .env.example), put it in .env and "
            "restart LiteLLM and your clients with it"
        )
