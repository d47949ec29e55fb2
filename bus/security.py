"""CURVE security and socket limits for sockets that may face a network.

A tcp:// server (proxy, RPC server) loads its secret key and runs a ZAP authenticator that accepts only the
client public keys found in `curve.authorized_keys` (a directory of *.key files). Clients load their own
key pair and the server's public key. ipc:// and inproc:// never leave the host and skip CURVE.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from bus.config import BusConfig, CurveConfig
from bus.logs import get_logger

log = get_logger("bus.security")


class SecurityConfigError(ValueError):
    """CURVE is enabled but a key file it needs is missing or unreadable."""


def generate_keypair(out_dir: Path | str, name: str = "server") -> tuple[Path, Path]:
    """Write NAME.key (public, share it) and NAME.key_secret (keep it) into out_dir; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(out), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def _load(path: Path | None, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    if path is None:
        raise SecurityConfigError(f"bus.curve.{what} must be set when bus.curve.enabled is true")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SecurityConfigError(f"cannot load CURVE key bus.curve.{what} = {path}: {exc}") from exc
    if secret and secret_key is None:
        raise SecurityConfigError(f"bus.curve.{what} = {path} holds no secret key (use the .key_secret file)")
    return public, secret_key


def faces_network(endpoint: str) -> bool:
    return endpoint.startswith("tcp://")


def apply_limits(sock: zmq.Socket, config: BusConfig) -> None:
    """ZMQ_MAXMSGSIZE: a peer that sends a bigger frame is disconnected before it is buffered."""
    sock.setsockopt(zmq.MAXMSGSIZE, config.max_msg_size)


def apply_server(sock: zmq.Socket, endpoint: str, curve: CurveConfig) -> None:
    """Make a binding socket a CURVE server when CURVE is on and the endpoint is tcp://."""
    if not (curve.enabled and faces_network(endpoint)):
        return
    public, secret = _load(curve.server_secret, "server_secret", secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def apply_client(sock: zmq.Socket, endpoint: str, curve: CurveConfig) -> None:
    """Give a connecting socket its key pair and the server's public key (tcp:// with CURVE only)."""
    if not (curve.enabled and faces_network(endpoint)):
        return
    server_public, _ = _load(curve.server_public, "server_public", secret=False)
    public, secret = _load(curve.client_secret, "client_secret", secret=True)
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def start_authenticator(ctx: zmq.Context, config: BusConfig) -> AsyncioAuthenticator | None:
    """ZAP handler with the allow-list of client keys; None when no endpoint needs it.

    Must run on the event loop of the process that owns the server sockets (zmq.auth.asyncio).
    """
    curve = config.curve
    if not curve.enabled or not any(faces_network(config.endpoint(n)) for n in ("pub", "sub", "rpc")):
        return None
    if curve.authorized_keys is None or not Path(curve.authorized_keys).is_dir():
        raise SecurityConfigError(
            f"bus.curve.authorized_keys must be a directory of client *.key files, got {curve.authorized_keys}"
        )
    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(curve.authorized_keys))
    n_keys = len(list(Path(curve.authorized_keys).glob("*.key")))
    log.info("curve authenticator started", authorized_keys=str(curve.authorized_keys), n_keys=n_keys)
    return auth
