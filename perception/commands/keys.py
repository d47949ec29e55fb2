"""`perception keys OUT_DIR`: write a CURVE key pair (NAME.key public, NAME.key_secret private)."""

from __future__ import annotations

import argparse

from bus.security import generate_keypair


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", help="directory for the key files (created if missing)")
    p.add_argument("--name", default="server", help="key pair name: 'server', or a client's name")


def run(args: argparse.Namespace) -> int:
    public, secret = generate_keypair(args.out_dir, args.name)
    print(f"public key: {public}   (give to peers; clients' public keys go in bus.curve.authorized_keys)")
    print(f"secret key: {secret}   (keep private; bus.curve.server_secret or bus.curve.client_secret)")
    return 0
