"""The tracking store, checked before any work and within seconds: MLflow's own client retries an absent server for
minutes (its patience is right for a server restarting during a run, not for a typo before one), and creates or
migrates whatever SQLite file it is pointed at.

Only the standard library: no MLflow import (its migration scripts are read as text), no file or folder created, a
database opened read-only.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from cnnlab.errors import ConfigError

PROBE_SECONDS = 3.0
SQLITE_HEADER = b"SQLite format 3\x00"
# The 100-byte header's fields read here, big-endian: page size at 16, change counter at 24, page count at 28 and the
# change counter the page count was written at, at 92 (SQLite's file format, 1.3); the pad bytes are skipped.
SQLITE_HEADER_FIELDS = ">16xH6xII60xI4x"
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}  # any one: MLflow made (or is making) this database
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")  # config.domains.STORE's


class StoreError(ConfigError):
    """A tracking store that cannot be used as given: the message names its URI and what to do."""


def effective_uri(configured: str, key: str) -> tuple[str, str]:
    """The URI MLflow will use and what set it: ``MLFLOW_TRACKING_URI`` wins over ``key``'s value."""
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    return (environment, "MLFLOW_TRACKING_URI") if environment else (str(configured), key)


def check_store(uri: str, source: str, must_exist: bool) -> None:
    """Raises StoreError when the store at ``uri`` cannot answer, is damaged or is not MLflow's; ``must_exist``
    for commands that only read (a store they would create would be empty anyway)."""
    scheme = uri.partition("://")[0].partition("+")[0] if "://" in uri else ""
    if scheme and scheme not in SCHEMES:
        raise StoreError(
            f"{source}={uri}: {scheme}:// is not a tracking store MLflow can use; give one of "
            f"{', '.join(s + '://' for s in SCHEMES)} or a folder"
        )
    if scheme in ("http", "https"):
        _probe_server(uri, source)
    elif scheme == "sqlite":
        check_sqlite(sqlite_path(uri), f"{source}={uri}", must_exist)
    elif scheme in DATABASE_PORTS:
        _probe_port(uri, source, DATABASE_PORTS[scheme])
    elif scheme in ("", "file") and must_exist:
        folder = Path(uri.removeprefix("file://")) if scheme else Path(uri)
        if not folder.is_dir():
            raise StoreError(f"{source}={uri}: no MLflow store there; nothing has been tracked in it yet")


def sqlite_path(uri: str) -> Path:
    """``sqlite:///mlruns/mlflow.db`` -> ``mlruns/mlflow.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    return Path(uri.partition("://")[2][1:])


def _probe_server(uri: str, source: str) -> None:
    """Any HTTP answer means a server is there (a proxy may not route MLflow's ``/health``); no answer within
    :data:`PROBE_SECONDS` is a refusal."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_SECONDS):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as error:
        why = getattr(error, "reason", error)
        raise StoreError(
            f"{source}={uri}: no tracking server answers there within {PROBE_SECONDS:.0f} s ({why}); start it "
            "(make server) or point MLFLOW_TRACKING_URI / tracking.uri at a running one"
        ) from None


def _probe_port(uri: str, source: str, default_port: int) -> None:
    parts = urlsplit(uri)
    host, port = parts.hostname or "localhost", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return
    except OSError as error:
        raise StoreError(
            f"{source}={uri}: no database answers at {host}:{port} within {PROBE_SECONDS:.0f} s ({error}); start it "
            "or point MLFLOW_TRACKING_URI / tracking.uri at a running one"
        ) from None


def check_sqlite(path: Path, named: str, must_exist: bool) -> None:
    """A SQLite store: absent is fine unless ``must_exist``; present, it must be a whole SQLite file with MLflow's
    tables (or none yet). Read without writing: the header, the page count it states, and the table names."""
    if not path.exists():
        if must_exist:
            raise StoreError(f"{named}: no MLflow store at {path}; nothing has been tracked there yet")
        return
    if path.is_dir():
        raise StoreError(f"{named}: {path} is a folder, not a SQLite database file")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(100)
    if size and not header.startswith(SQLITE_HEADER):
        raise StoreError(
            f"{named}: {path} is not a SQLite database, so not an MLflow store; nothing was changed. Point "
            "tracking.uri at an MLflow store, or at a new file for a new store"
        )
    if len(header) == 100 and not Path(f"{path}-wal").exists():
        # The header's page size, change counter, page count and the counter that last wrote the page count
        page_size, changes, pages, pages_written_at = struct.unpack(SQLITE_HEADER_FIELDS, header)
        page_size = 65536 if page_size in (0, 1) else page_size
        # The page count is trustworthy when written by the same change as the counter (SQLite's file format, 1.3.7)
        if changes == pages_written_at and size < pages * page_size:
            raise damaged(path, named, f"{size} bytes where its header counts {pages * page_size}: truncated")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=PROBE_SECONDS) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "experiments" in tables:
                connection.execute("SELECT count(*) FROM experiments").fetchone()
            if "alembic_version" in tables:
                check_schema_revision(connection, path, named)
    except sqlite3.DatabaseError as error:
        raise damaged(path, named, str(error)) from None
    if tables and not tables & MLFLOW_TABLES:
        raise StoreError(
            f"{named}: {path} is a SQLite database, but not MLflow's (its tables: {sorted(tables)[:8]}); point "
            "tracking.uri at an MLflow store or a new file"
        )
    if must_exist and not tables:
        raise StoreError(f"{named}: {path} is an empty database; nothing has been tracked there yet")


def schema_revision(connection: sqlite3.Connection) -> str | None:
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def check_schema_revision(connection: sqlite3.Connection, path: Path, named: str) -> None:
    """The store's schema revision (alembic's ``alembic_version``) must be the one the installed MLflow expects.

    MLflow itself refuses another revision only once a command has started, and on a store missing a table it
    migrates without asking (``mlflow.store.db.utils._safe_initialize_tables``), which an older MLflow sharing the
    store can then no longer read. An older revision that moves while it is watched is a store being created by
    another process right now (MLflow's own lock orders the two), so it passes."""
    from cnnlab.compat import mlflow_schema_revisions

    version, known = mlflow_schema_revisions()
    heads = set(known) - {parent for parents in known.values() for parent in parents}
    found = schema_revision(connection)
    if len(heads) != 1 or found is None or found in heads:
        return
    (head,) = heads
    if found in known:
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if schema_revision(connection) != found:
                return
    uri = f"sqlite:///{path}"
    if found in known:
        raise StoreError(
            f"{named}: the store {path} has MLflow's schema revision {found}, older than the revision {head} the "
            f"installed MLflow {version} expects; nothing was changed. Back it up (cp {path} {path}.bak), then "
            f"migrate it with `mlflow db upgrade {uri}` (an older MLflow can then no longer open it), or use the "
            "MLflow that made it"
        )
    raise StoreError(
        f"{named}: the store {path} has MLflow's schema revision {found}, which the installed MLflow {version} does "
        f"not know (it expects {head}): a newer MLflow made it; nothing was changed. Open it with that MLflow, or "
        "point tracking.uri at another store"
    )


def damaged(path: Path, named: str, why: str) -> StoreError:
    return StoreError(
        f"{named}: the store {path} is damaged ({why}); nothing was changed. To recover, restore it from a backup, "
        f"or keep it aside (mv {path} {path}.damaged; `sqlite3 {path}.damaged .recover` may rescue its rows) and let "
        "the next run start a new store: the artifacts beside it are kept"
    )
