"""`perception keys OUT_DIR [--name NAME] [--force]`: write a CURVE key pair (NAME.key public, NAME.key_secret
private, 0600 from the start). Existing keys are never replaced without `--force`: a silently regenerated
server key locks every client out, a regenerated client key loses its place in the allow-list."""

from __future__ import annotations

import argparse
import re
import sys

from bus.security import SecurityConfigError, generate_keypair


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", help="directory for the key files (created if missing)")
    p.add_argument("--name", default="server", help="key pair name: 'server', or a client's name")
    p.add_argument("--force", action="store_true", help="replace an existing key pair of that name")


_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # a file name in OUT_DIR, never a path


def run(args: argparse.Namespace) -> int:
    if not _NAME.match(args.name):
        print(
            f"perception keys: --name {args.name!r} must be letters, digits, '_', '-' or '.' (not starting with '.')",
            file=sys.stderr,
        )
        return 2
    try:
        public, secret = generate_keypair(args.out_dir, args.name, overwrite=args.force)
    except (SecurityConfigError, OSError) as exc:
        print(f"perception keys: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}   (give to peers; clients' public keys go in bus.curve.authorized_keys)")
    print(f"secret key: {secret}   (keep private; bus.curve.server_secret or bus.curve.client_secret)")
    return 0
