#!/usr/bin/env python3
"""The router with its upstream calls made through httpx's API on httpx-aiohttp's
transport: a build to measure with ``bench/run.py --compare``, not to ship.

    python bench/run.py --compare "httpx_aiohttp=python bench/httpx_aiohttp_router.py"

Takes the ``memory-router serve`` arguments. Needs ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import sys

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from router.app import create_app
from router.cli import build_parser
from router.server import run
from router.settings import load_settings


def main() -> int:
    args = build_parser().parse_args(sys.argv[1:])
    # The settings as ``memory-router serve`` reads them.
    flags = ("host", "port", "litellm_url", "config", "log_level")
    settings = load_settings(**{flag: getattr(args, flag) for flag in flags})

    def session() -> aiohttp.ClientSession:
        # Made on first use, inside the server's event loop; set up as the router's own.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.max_connections, keepalive_timeout=settings.keepalive_expiry
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            auto_decompress=False,
            trust_env=False,
        )

    client = httpx.AsyncClient(
        transport=AiohttpTransport(client=session), follow_redirects=False, trust_env=False
    )
    client.headers.clear()
    return 0 if run(create_app(settings, http_client=client), settings) else 2


if __name__ == "__main__":
    sys.exit(main())
