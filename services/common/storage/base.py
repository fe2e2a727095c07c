"""The artifact store interface and the logic both backends share.

Backends implement a handful of primitives (`put`, `_open`, `stat`, `exists`, `list`, `delete`);
files, folders, byte strings and integrity checks are built on top of them here, once.
"""

from __future__ import annotations

import abc
import hashlib
import io
import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote

from services.common.errors import DataLoss, InvalidArgument
from services.common.storage.keys import folder_prefix, validate_key, validate_prefix

# One read or write buffer. Large enough for throughput, small enough that a multi-GB checkpoint
# never sits in memory; also the S3 part size (S3 wants parts of at least 5 MiB).
CHUNK_SIZE = 8 * 1024 * 1024

DEFAULT_MEDIA_TYPE = "application/octet-stream"
FOLDER_MEDIA_TYPE = "inode/directory"
# mimetypes does not know the formats this project writes most.
_MEDIA_TYPES = {
    ".jsonl": "application/jsonl",
    ".json": "application/json",
    ".gguf": DEFAULT_MEDIA_TYPE,
    ".safetensors": DEFAULT_MEDIA_TYPE,
}


@dataclass(frozen=True)
class StoredObject:
    """What a write returns and a read checks; maps 1:1 onto the protobuf ArtifactRef."""

    uri: str
    sha256: str
    size_bytes: int
    media_type: str

    def as_proto(self):  # -> distill.v1.common_pb2.ArtifactRef
        """The protobuf ArtifactRef that messages carry (the one place this mapping lives)."""
        from distill.v1 import common_pb2

        return common_pb2.ArtifactRef(uri=self.uri, sha256=self.sha256,
                                      size_bytes=self.size_bytes, media_type=self.media_type)


def guess_media_type(key: str) -> str:
    suffix = Path(key).suffix.lower()
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    return mimetypes.guess_type(key, strict=False)[0] or DEFAULT_MEDIA_TYPE


def copy_hashing(src: BinaryIO, dst: BinaryIO | None = None) -> tuple[str, int]:
    """Copy `src` to `dst` (if any) in CHUNK_SIZE reads; return (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest(), size


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Lowercase hex sha256 of a local file, read in CHUNK_SIZE blocks."""
    with open(path, "rb") as f:
        return copy_hashing(f)[0]


def folder_digest(entries: dict[str, str]) -> str:
    """sha256 of a `sha256sum`-style manifest (relative path -> sha256), sorted by path.

    A folder's ref needs one checksum; this one changes when any file, name or the file set does.
    """
    manifest = "".join(f"{entries[rel]}  {rel}\n" for rel in sorted(entries))
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


class VerifiedReader(io.RawIOBase):
    """Reads an object and raises DataLoss at end of stream if its bytes don't match its ref.

    Verification needs every byte, so it happens when a read reaches the end; a reader closed
    earlier has verified nothing.
    """

    def __init__(self, raw: BinaryIO, ref: StoredObject, key: str, close: Callable[[], None]):
        super().__init__()
        self.ref = ref
        self._raw = raw
        self._key = key
        self._close = close
        self._digest = hashlib.sha256()
        self._size = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        # Overrides RawIOBase.read, which would copy every chunk twice through readinto.
        if size is None or size < 0:
            return self.readall()
        data = self._raw.read(size)
        self._account(data, size)
        return data

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._account(data, len(buffer))
        return len(data)

    def _account(self, data: bytes, requested: int) -> None:
        if data:
            self._digest.update(data)
            self._size += len(data)
            if self._size > self.ref.size_bytes:
                self._fail(f"has more than the {self.ref.size_bytes} bytes recorded")
        elif requested:
            self._verify()  # end of stream

    def _verify(self) -> None:
        if self._verified:
            return
        if self._size != self.ref.size_bytes:
            self._fail(f"has {self._size} bytes, {self.ref.size_bytes} recorded")
        actual = self._digest.hexdigest()
        if actual != self.ref.sha256:
            self._fail(f"has sha256 {actual}, {self.ref.sha256} recorded")
        self._verified = True

    def _fail(self, problem: str) -> None:
        raise DataLoss(f"artifact {self._key!r} is corrupt: it {problem}")

    def close(self) -> None:
        if not self.closed:
            try:
                self._close()
            finally:
                super().close()


class ArtifactStore(abc.ABC):
    """Keys → immutable blobs with a recorded sha256 (job keys: services/common/specs/layout.py).

    Blocking I/O throughout: async callers use `asyncio.to_thread`. Writes are all-or-nothing: a
    failed or interrupted write leaves whatever was under the key before (usually nothing).
    """

    #: URI of the store's root, ending in "/"; `uri(key)` is this plus the quoted key.
    base_uri: str

    # --- backend primitives -------------------------------------------------------------------

    @abc.abstractmethod
    def put(self, key: str, stream: BinaryIO, *, media_type: str | None = None,
            durable: bool = True) -> StoredObject:
        """Store everything `stream.read()` yields, reading CHUNK_SIZE at a time.

        `durable=False` skips forcing the bytes to disk before publishing (where a backend does
        that): a process crash still loses nothing, a power loss may leave an object whose
        sha256 check fails on read. For entries that are cheap to lose (the teacher cache)."""

    @abc.abstractmethod
    def _open(self, key: str) -> tuple[BinaryIO, StoredObject, Callable[[], None]]:
        """(raw byte stream, the ref recorded at write time, a function that closes it)."""

    @abc.abstractmethod
    def stat(self, key: str) -> StoredObject:
        """The ref recorded at write time; NotFound if there is no such object."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def modified(self, key: str) -> float:
        """When the object was written (Unix seconds); NotFound if there is no such object.
        Retention sweeps compare it with their TTL."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    # --- shared behaviour ---------------------------------------------------------------------

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Remove these objects (missing ones are not an error); backends batch the requests."""
        for key in keys:
            self.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; returns how many. An empty prefix is refused."""
        if validate_prefix(prefix) == "":
            raise InvalidArgument("refusing to delete_prefix('') (the whole store)")
        keys = [*self.list(prefix)]  # listed first: deleting while listing skips keys
        self.delete_keys(keys)
        return len(keys)

    def uri(self, key: str) -> str:
        """`file:///abs/root/key` or `s3://bucket/prefix/key`; folder prefixes end in "/"."""
        if isinstance(key, str) and key.endswith("/"):
            validate_prefix(key)
        else:
            validate_key(key)
        return self.base_uri + quote(key, safe="/")

    def key_from_uri(self, uri: str) -> str:
        """Inverse of `uri`; InvalidArgument for a URI that points outside this store."""
        if not isinstance(uri, str) or not uri.startswith(self.base_uri):
            raise InvalidArgument(f"artifact URI {uri!r} is not in this store ({self.base_uri})")
        key = unquote(uri[len(self.base_uri) :])
        return validate_prefix(key) if key.endswith("/") else validate_key(key)

    def put_bytes(self, key: str, data: bytes, *, media_type: str | None = None,
                  durable: bool = True) -> StoredObject:
        return self.put(key, io.BytesIO(data), media_type=media_type, durable=durable)

    def put_file(
        self, key: str, path: str | os.PathLike[str], *, media_type: str | None = None
    ) -> StoredObject:
        with open(path, "rb") as stream:
            return self.put(key, stream, media_type=media_type)

    def put_dir(self, prefix: str, local_dir: str | os.PathLike[str]) -> StoredObject:
        """Upload every file under `local_dir` as `prefix/relative/path`.

        Returns one ref for the folder: its URI ends in "/", its sha256 is `folder_digest` of the
        files, its size their total. Files go up one by one; a folder is complete once this returns.
        """
        prefix = folder_prefix(prefix)
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidArgument(f"put_dir: {str(root)!r} is not a directory")
        entries: dict[str, str] = {}
        total = 0
        # os.walk doesn't follow directory symlinks (no loops) but lists file symlinks, which
        # open() follows: Hugging Face cache folders are made of them.
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                rel = Path(dirpath, name).relative_to(root).as_posix()
                ref = self.put_file(prefix + rel, Path(dirpath, name))
                entries[rel] = ref.sha256
                total += ref.size_bytes
        return StoredObject(self.uri(prefix), folder_digest(entries), total, FOLDER_MEDIA_TYPE)

    def open(self, key: str) -> VerifiedReader:
        """A binary reader over the object; reaching its end verifies the sha256 (DataLoss)."""
        validate_key(key)
        raw, ref, close = self._open(key)
        return VerifiedReader(raw, ref, key, close)

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The object's bytes in chunks; the last step raises DataLoss if they don't verify."""
        with self.open(key) as reader:
            while chunk := reader.read(chunk_size):
                yield chunk

    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory: for small objects (JSON, cache entries) only."""
        with self.open(key) as reader:
            return reader.read()

    def get_file(self, key: str, dest: str | os.PathLike[str]) -> StoredObject:
        """Download to `dest`; the file appears only once its bytes have verified."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name[:100]}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, self.open(key) as reader:
                while chunk := reader.read(CHUNK_SIZE):
                    out.write(chunk)
                ref = reader.ref
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ref

    def get_dir(
        self,
        prefix: str,
        dest_dir: str | os.PathLike[str],
        *,
        expected_sha256: str | None = None,
    ) -> StoredObject:
        """Download every object under `prefix` into `dest_dir`, keeping relative paths.

        Returns the folder ref as `put_dir` did; with `expected_sha256` (a folder ref's sha256) a
        missing, extra or changed file raises DataLoss.
        """
        prefix = folder_prefix(prefix)
        dest_root = Path(dest_dir)
        entries: dict[str, str] = {}
        total = 0
        for key in self.list(prefix):
            rel = key[len(prefix) :]
            ref = self.get_file(key, dest_root.joinpath(*rel.split("/")))
            entries[rel] = ref.sha256
            total += ref.size_bytes
        dest_root.mkdir(parents=True, exist_ok=True)
        digest = folder_digest(entries)
        if expected_sha256 is not None and digest != expected_sha256:
            raise DataLoss(
                f"artifact folder {prefix!r} does not match its ref: sha256 {digest}, "
                f"{expected_sha256} expected (a file is missing, extra or changed)"
            )
        return StoredObject(self.uri(prefix), digest, total, FOLDER_MEDIA_TYPE)
