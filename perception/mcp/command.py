"""`perception mcp [--http [HOST:]PORT] [--token T] [--timeout S] [--store URL]`: an MCP server over the running
pipeline, or with `--store` over a memory database alone (no pipeline: perception/mcp/memory_tools.py).

stdio (the default) is what a desktop agent launches: it speaks MCP on stdin/stdout (logs go to stderr).
`--http` serves MCP over streamable HTTP at http://HOST:PORT/mcp, on 127.0.0.1 unless HOST says otherwise,
and prints `mcp <url>` on stdout once it listens (PORT 0 picks a free port). As for the bus
(bus/security.py), a loopback address needs no credentials and any other needs them: a non-loopback HOST
is refused unless a bearer token is given (`--token`, or better the PERCEPTION_MCP_TOKEN environment
variable, which `ps` does not show), and with a token every HTTP request must carry
`Authorization: Bearer <token>`. docs/agents.md is the manual.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from bus.config import is_loopback_endpoint
from bus.security import SecurityConfigError

HELP = "serve an MCP server (tools for agent planners) over the running pipeline"
TOKEN_ENV = "PERCEPTION_MCP_TOKEN"
MIN_TOKEN_CHARS = 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--http",
        default=None,
        metavar="[HOST:]PORT",
        help="serve streamable HTTP on HOST:PORT (default host 127.0.0.1) instead of stdio",
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"bearer token every HTTP request must carry (default: ${TOKEN_ENV}); required off loopback",
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="answer the memory tools from this store (a SQLite path or postgresql://...) with no pipeline",
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the world node (default 3)")
    p.add_argument(
        "--model-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for calls that run the model: ask, search (default 15)",
    )


def parse_http(text: str) -> tuple[str, int]:
    """'8765' -> ('127.0.0.1', 8765); 'HOST:PORT'; '[::1]:8765' for IPv6."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--http {text!r}: expected [HOST:]PORT, e.g. 8765 or 127.0.0.1:8765") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"--http {text!r}: port {number} is not in 0..65535")
    return host, number


def is_loopback(host: str) -> bool:
    return is_loopback_endpoint(f"tcp://{host}:0")


def check_http(host: str, token: str | None) -> None:
    """The bus's rule for HTTP: off loopback only with a credential, and a credential worth the name."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise SecurityConfigError(
            f"the MCP token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    if not is_loopback(host) and token is None:
        raise SecurityConfigError(
            f"--http {host}: refusing to serve MCP on a non-loopback address without a token; set "
            f"{TOKEN_ENV} (or --token) so that every request must carry `Authorization: Bearer <token>`, "
            "or serve on 127.0.0.1"
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        ipaddress.ip_address(host)
    except ValueError:  # a host name: resolve it
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    from perception.config import ConfigError, load_config

    try:
        config = load_config(args.config)
        http = parse_http(args.http) if args.http is not None else None
    except (ConfigError, ValueError) as exc:
        print(f"perception mcp: {exc}", file=sys.stderr)
        return 2
    if args.timeout <= 0 or args.model_timeout <= 0:
        print("perception mcp: --timeout and --model-timeout must be > 0", file=sys.stderr)
        return 2
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    sock = None
    if http is not None:
        check_http(http[0], token)  # SecurityConfigError: perception/cli.py prints it, exit 2
        try:
            sock = bind(*http)
        except OSError as exc:
            print(f"perception mcp: cannot listen on {http[0]}:{http[1]}: {exc}", file=sys.stderr)
            return 2

    import anyio  # the SDK and its stack only now: `perception --help` stays fast

    from perception.mcp.server import serve, serve_store

    store = None
    if args.store is not None:
        from perception.memory.open import open_store
        from perception.memory.store import StoreError

        try:
            mem = config.pipeline.world.memory
            store = open_store(
                args.store, None, create=False, password_file=mem.password_file, ef_search=mem.hnsw_ef_search
            )
        except StoreError as exc:
            print(f"perception mcp: {exc}", file=sys.stderr)
            if sock is not None:
                sock.close()
            return 2
    try:
        if store is not None:
            anyio.run(serve_store, config, store, sock, token)
        else:
            anyio.run(serve, config, args.timeout, args.model_timeout, sock, token)
    finally:
        if sock is not None:
            sock.close()
    return 0
