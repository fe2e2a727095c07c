"""The artifact store: where datasets, checkpoints, adapters and GGUFs live
(docs/ARCHITECTURE.md "One job, as data").

`open_store(url, ...)` picks the backend from a settings URL: `file:///var/lib/distill/artifacts`
(embedded default) or `s3://bucket/prefix` with endpoint and keys passed explicitly. Every write
returns a `StoredObject(uri, sha256, size_bytes, media_type)`, the protobuf ArtifactRef's fields;
every full read verifies the sha256. The API is blocking: async code calls it via
`asyncio.to_thread`.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from services.common.errors import InvalidArgument
from services.common.storage.base import (
    CHUNK_SIZE,
    FOLDER_MEDIA_TYPE,
    ArtifactStore,
    StoredObject,
    VerifiedReader,
    file_sha256,
)
from services.common.storage.keys import validate_key, validate_prefix
from services.common.storage.local import LocalStore
from services.common.storage.s3 import S3Store

SCHEMES = ("file", "s3")
DEFAULT_URL = "file:.distill/artifacts"

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_URL",
    "FOLDER_MEDIA_TYPE",
    "ArtifactStore",
    "LocalStore",
    "S3Store",
    "StoredObject",
    "VerifiedReader",
    "file_sha256",
    "open_store",
    "validate_key",
    "validate_prefix",
]


def open_store(
    url: str,
    *,
    endpoint: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    secure: bool = True,
    region: str | None = None,
) -> ArtifactStore:
    """The store a settings URL names.

    `file:///abs/dir` or `file:rel/dir` (relative to the working directory), or
    `s3://bucket[/prefix]` with the S3 connection passed explicitly (ignored for file:).
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(
                f"artifact store URL {url!r} names host {parts.netloc!r}: use file:///abs/dir "
                "or file:rel/dir"
            )
        if not parts.path:
            raise InvalidArgument(f"artifact store URL {url!r} names no directory")
        return LocalStore(unquote(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidArgument(
                f"artifact store URL {url!r} names no bucket (s3://bucket/prefix)"
            )
        if not endpoint:
            raise InvalidArgument(f"artifact store URL {url!r} needs an S3 endpoint (host:port)")
        return S3Store(
            parts.netloc,
            unquote(parts.path),
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
        )
    raise InvalidArgument(
        f"artifact store URL {url!r} has scheme {parts.scheme!r}; allowed: "
        + ", ".join(f"{s}://" for s in SCHEMES)
    )
