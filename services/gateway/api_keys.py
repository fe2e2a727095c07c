"""Projects' API keys in the gateway's SQLite database, and the gateway's authenticator.

A key is 32 random bytes (256 bits), so its SHA-256 is all that is stored: nobody can guess a
key from its digest, and a digest needs no salt. bcrypt or argon2 exist to slow down guessing of
low-entropy passwords; for a random key they would only add tens of milliseconds to every RPC.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from distill.v1 import admin_pb2
from services.common.auth import DEFAULT_PROJECT, Principal, project_name, same_secret
from services.common.errors import InvalidArgument, NotFound

KEY_PREFIX = "dk_"  # recognisable in a leaked log or a secret scanner
_DIGEST = re.compile(r"[0-9a-f]{64}")
NAME_PREFIX = "apiKeys/"
MAX_DESCRIPTION = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    create_time REAL NOT NULL,
    revoke_time REAL
);
"""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _stamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class ApiKeys:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def create(self, project: str, description: str = "") -> tuple[admin_pb2.ApiKey, str]:
        """A new key for `project`: (its record, the key itself, which is never stored)."""
        project_name(project)
        if len(description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"description: at most {MAX_DESCRIPTION} characters, got "
                                  f"{len(description)}")
        key_id, key = secrets.token_hex(8), KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, project, sha256, description, create_time) "
                "VALUES (?,?,?,?,?)", (key_id, project, _digest(key), description, time.time()))
        return self.get(NAME_PREFIX + key_id), key

    def get(self, name: str) -> admin_pb2.ApiKey:
        key_id = name.removeprefix(NAME_PREFIX)
        with self._lock:
            row = self._db.execute(
                "SELECT id, project, description, create_time, revoke_time FROM api_keys "
                "WHERE id = ?", (key_id,)).fetchone()
        if row is None or not name.startswith(NAME_PREFIX):
            raise NotFound(f"name: no API key {name!r}")
        return self._record(*row)

    def list(self, project: str = "") -> list[admin_pb2.ApiKey]:
        sql = "SELECT id, project, description, create_time, revoke_time FROM api_keys"
        args: tuple = ()
        if project:
            sql, args = sql + " WHERE project = ?", (project_name(project),)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY create_time, id", args).fetchall()
        return [self._record(*row) for row in rows]

    def revoke(self, name: str) -> admin_pb2.ApiKey:
        self.get(name)  # NOT_FOUND names the key
        with self._lock:
            self._db.execute("UPDATE api_keys SET revoke_time = ? WHERE id = ? AND revoke_time "
                             "IS NULL", (time.time(), name.removeprefix(NAME_PREFIX)))
        return self.get(name)

    def project_of(self, digest: str) -> str | None:
        """The project of the valid (not revoked) key whose SHA-256 is `digest`; None for any
        other string. Looked up by digest, so a lookup's timing tells at most something about
        digests, never a key."""
        with self._lock:
            row = self._db.execute("SELECT project FROM api_keys WHERE sha256 = ? AND "
                                   "revoke_time IS NULL", (digest,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _record(key_id: str, project: str, description: str, created: float,
                revoked: float | None) -> admin_pb2.ApiKey:
        record = admin_pb2.ApiKey(name=NAME_PREFIX + key_id, project=project,
                                  description=description, create_time=_stamp(created))
        if revoked is not None:
            record.revoke_time.CopyFrom(_stamp(revoked))
        return record


class GatewayAuth:
    """The gateway's callers: the admin key (admin RPCs; acts in the default project), the
    settings' single token (the default project, as a one-user install has always had) and,
    once an admin key is configured, projects' keys. With neither token set, nobody needs a key
    and everyone is `default` (a one-user install on loopback). The internal token is the
    router's (DirectoryService, every project's alias feed), never a user's.

    Keys are compared by their SHA-256, so the router can ask about a caller's key
    (`DirectoryService.ResolveCaller`) without the key itself leaving it."""

    def __init__(self, keys: ApiKeys, auth_token: str | None, admin_token: str | None,
                 internal_token: str | None = None) -> None:
        self._keys = keys
        self._fixed = [(_digest(token), principal) for token, principal in (
            (admin_token, Principal(DEFAULT_PROJECT, admin=True)),
            (auth_token, Principal(DEFAULT_PROJECT)),
            (internal_token, Principal(DEFAULT_PROJECT, internal=True))) if token is not None]
        self._projects = admin_token is not None
        self.required = auth_token is not None or admin_token is not None

    def authenticate(self, key: str) -> Principal | None:
        return self.by_digest(_digest(key)) if key else None

    def caller_project(self, digest: str) -> str:
        """The project a caller whose key has SHA-256 `digest` ("": no key) acts in, as this
        gateway's interceptor would decide it (DirectoryService.ResolveCaller)."""
        if digest and not _DIGEST.fullmatch(digest):
            raise InvalidArgument("key_sha256: 64 lower-case hex digits (the SHA-256 of the "
                                  "caller's key), or empty for no key")
        principal = self.by_digest(digest) if digest else None
        if principal is None and not self.required:
            principal = Principal(DEFAULT_PROJECT)
        if principal is None or principal.internal:  # the internal token is no caller's key
            raise NotFound("key_sha256: no valid API key has this digest")
        return principal.project

    def by_digest(self, digest: str) -> Principal | None:
        """The principal of the key whose SHA-256 (hex) is `digest`."""
        for fixed, principal in self._fixed:
            if same_secret(digest, fixed):
                return principal
        project = self._keys.project_of(digest) if self._projects else None
        return Principal(project) if project else None
