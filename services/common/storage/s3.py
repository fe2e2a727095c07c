"""s3:// backend through the `minio` client: MinIO, SeaweedFS or any S3 API.

Each object carries its sha256 as user metadata (`x-amz-meta-sha256`). S3 takes metadata with
the request that starts an upload, before the first byte, while the sha256 is known only after the
last; so a stream is first spooled to a local temp file while being hashed (disk, never memory),
then uploaded with its checksum. A source that fails midway therefore never reaches the server;
an upload that fails midway is aborted by minio (a single PUT or a multipart completion is atomic).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name

from services.common.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.storage.base import (
    CHUNK_SIZE,
    DEFAULT_MEDIA_TYPE,
    ArtifactStore,
    StoredObject,
    copy_hashing,
    guess_media_type,
)
from services.common.storage.keys import validate_key, validate_prefix

SHA256_HEADER = "x-amz-meta-sha256"
_MAX_PARTS = 10_000  # S3's multipart limit
_MISSING = {"NoSuchKey", "NoSuchBucket", "ResourceNotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3Store(ArtifactStore):
    """Objects `bucket/prefix/key`. Connection settings are explicit: no environment reads."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        secure: bool = True,
        region: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        parallel_uploads: int = 3,
        http_client: urllib3.PoolManager | None = None,
    ):
        """`endpoint` is host[:port]; memory per upload is about (parallel_uploads + 1) parts.

        `http_client` replaces minio's default pool (timeouts, retries, CA bundle).
        """
        try:
            check_bucket_name(bucket)
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region,
                http_client=http_client,
            )
        except ValueError as exc:
            raise InvalidArgument(f"invalid S3 store settings (bucket {bucket!r}): {exc}") from exc
        prefix = prefix.strip("/")
        validate_prefix(prefix)
        self.bucket = bucket
        self.endpoint = endpoint
        self._prefix = prefix + "/" if prefix else ""
        self._spool_dir = spool_dir
        self._parallel_uploads = parallel_uploads
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()
        self.base_uri = f"s3://{bucket}/{quote(self._prefix, safe='/')}"

    def __repr__(self) -> str:
        return f"S3Store({self.base_uri!r}, endpoint={self.endpoint!r})"

    def _name(self, key: str) -> str:
        return self._prefix + key

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn client errors into DistillErrors that say which object and which server."""
        try:
            yield
        except S3Error as exc:
            if exc.code in _MISSING:
                raise NotFound(f"{what} not found in {self.base_uri}") from exc
            if exc.code in _DENIED:
                raise PermissionDenied(
                    f"artifact store {self.endpoint} refused {what}: {exc.code}"
                ) from exc
            raise Unavailable(
                f"artifact store {self.endpoint} failed on {what}: {exc.code}: {exc.message}"
            ) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise Unavailable(
                f"artifact store {self.endpoint} unreachable for {what}: {exc}"
            ) from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (once per store object; writes call this)."""
        if self._bucket_ready:
            return
        with self._bucket_lock, self._errors(f"bucket {self.bucket!r}"):
            if not self._bucket_ready and not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code != "BucketAlreadyOwnedByYou":  # lost a harmless race
                        raise
            self._bucket_ready = True

    def put(self, key: str, stream: BinaryIO, *, media_type: str | None = None,
            durable: bool = True) -> StoredObject:
        # An S3 PUT is durable when it returns; `durable` only matters to file://.
        validate_key(key)
        with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
            sha256, size = copy_hashing(stream, spool)
            spool.seek(0)
            return self._upload(key, spool, sha256, size, media_type)

    def put_file(
        self, key: str, path: str | os.PathLike[str], *, media_type: str | None = None
    ) -> StoredObject:
        validate_key(key)
        with open(path, "rb") as source:  # hash, then upload the same file: no spool copy
            sha256, size = copy_hashing(source)
            source.seek(0)
            return self._upload(key, source, sha256, size, media_type)

    def _upload(
        self, key: str, source: BinaryIO, sha256: str, size: int, media_type: str | None
    ) -> StoredObject:
        self.ensure_bucket()
        ref = StoredObject(self.uri(key), sha256, size, media_type or guess_media_type(key))
        reader = _HashingReader(source)
        with self._errors(f"upload of {key!r}"):
            self._client.put_object(
                self.bucket,
                self._name(key),
                reader,
                length=size,
                content_type=ref.media_type,
                metadata={SHA256_HEADER: sha256},
                part_size=_part_size(size),
                num_parallel_uploads=self._parallel_uploads,
            )
        if reader.hexdigest() != sha256:
            # The local file changed between hashing and uploading: the stored bytes don't
            # match the recorded checksum, so don't leave them behind.
            self.delete(key)
            raise FailedPrecondition(f"the source of {key!r} changed while it was uploaded")
        return ref

    def _open(self, key: str) -> tuple[BinaryIO, StoredObject, Callable[[], None]]:
        with self._errors(f"artifact {key!r}"):
            response = self._client.get_object(self.bucket, self._name(key))

        def close() -> None:
            response.close()
            response.release_conn()

        # The GET's own headers, not a separate HEAD, so checksum and bytes are one version.
        try:
            ref = self._ref(key, response.headers)
        except BaseException:
            close()
            raise
        return response, ref, close

    def _ref(self, key: str, headers) -> StoredObject:
        sha256 = headers.get(SHA256_HEADER)
        if not sha256:
            raise DataLoss(f"artifact {key!r} has no recorded sha256 (not written by this store)")
        return StoredObject(
            self.uri(key),
            sha256,
            int(headers.get("content-length", 0)),
            headers.get("content-type") or DEFAULT_MEDIA_TYPE,
        )

    def stat(self, key: str) -> StoredObject:
        validate_key(key)
        with self._errors(f"artifact {key!r}"):
            info = self._client.stat_object(self.bucket, self._name(key))
        return self._ref(key, info.metadata)

    def modified(self, key: str) -> float:
        validate_key(key)
        with self._errors(f"artifact {key!r}"):
            info = self._client.stat_object(self.bucket, self._name(key))
        return info.last_modified.timestamp()

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            with self._errors(f"artifact {key!r}"):
                self._client.stat_object(self.bucket, self._name(key))
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        objects = self._client.list_objects(self.bucket, prefix=self._name(prefix), recursive=True)
        keys = []
        try:
            with self._errors(f"listing {prefix!r}"):
                for obj in objects:
                    if not obj.is_dir:  # some servers list folder markers; they hold no data
                        keys.append(obj.object_name[len(self._prefix) :])
        except NotFound:
            return  # no bucket yet: nothing stored
        # S3 promises UTF-8 byte order, but SeaweedFS lists folder by folder ("a/b" before
        # "a.txt"); sort so every server, and the file:// backend, enumerate alike.
        yield from sorted(keys, key=lambda k: k.encode("utf-8"))

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            with self._errors(f"delete of {key!r}"):
                self._client.remove_object(self.bucket, self._name(key))
        except NotFound:
            pass  # S3 deletes are idempotent; only a missing bucket lands here

    def delete_keys(self, keys: Sequence[str]) -> None:
        for key in keys:
            validate_key(key)
        if not keys:
            return
        try:
            with self._errors(f"delete of {len(keys)} objects from {keys[0]!r}"):
                # One request per 1000 keys; the result is a lazy iterator of per-key failures.
                failures = [
                    *self._client.remove_objects(
                        self.bucket, (DeleteObject(self._name(key)) for key in keys)
                    )
                ]
        except NotFound:
            return  # no bucket: nothing to delete, as for `delete`
        if failures:
            first = failures[0]
            raise Unavailable(
                f"could not delete {len(failures)} of {len(keys)} objects: "
                f"{first.name}: {first.code} {first.message}"
            )


class _HashingReader:
    """Passes reads through while hashing them, to check what actually went up."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _part_size(size: int) -> int:
    """CHUNK_SIZE, grown in whole MiB for objects that would need more than 10,000 parts."""
    mib = 1024 * 1024
    needed = -(-size // _MAX_PARTS)
    return max(CHUNK_SIZE, -(-needed // mib) * mib)
