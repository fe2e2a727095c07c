"""file:// backend: objects are plain files under a root folder (the embedded default).

`root/<key>` holds the bytes, so other tools (llama.cpp, transformers) can open a stored file by
its path. `root/.distill-meta/<key>.json` holds its ref. The sidecar is written last and is the
commit marker: an object exists only once its sidecar does, so a crash between the two renames
shows either nothing (new key) or a mismatch that reads raise as DataLoss (overwrite). A durable
put fsyncs both files before their renames and, after them, both folders and the parent of any
folder it made, so a committed object survives a power loss too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from services.common.errors import DataLoss, FailedPrecondition, NotFound
from services.common.storage.base import ArtifactStore, StoredObject, copy_hashing, guess_media_type
from services.common.storage.keys import RESERVED_ROOT, validate_key, validate_prefix

_META_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"  # never ends in .json, so list() cannot mistake one for a sidecar


class LocalStore(ArtifactStore):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._meta_root = self.root / RESERVED_ROOT
        self.base_uri = f"file://{quote(self.root.as_posix())}/"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _data_path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _meta_path(self, key: str) -> Path:
        return self._meta_root.joinpath(*(key + _META_SUFFIX).split("/"))

    def put(self, key: str, stream: BinaryIO, *, media_type: str | None = None,
            durable: bool = True) -> StoredObject:
        validate_key(key)
        data_path, meta_path = self._data_path(key), self._meta_path(key)
        tmp_paths: list[Path] = []
        made: list[Path] = []  # folders this put created: their parents gained an entry
        try:
            with _temp_in(data_path.parent, tmp_paths, made) as out:
                sha256, size = copy_hashing(stream, out)
                out.flush()
                if durable:
                    os.fsync(out.fileno())  # the rename below must not publish unwritten bytes
            ref = StoredObject(self.uri(key), sha256, size, media_type or guess_media_type(key))
            with _temp_in(meta_path.parent, tmp_paths, made) as out:
                out.write(json.dumps(
                    {"sha256": sha256, "size_bytes": size, "media_type": ref.media_type}
                ).encode("utf-8"))
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            os.replace(tmp_paths[0], data_path)
            os.replace(tmp_paths[1], meta_path)  # commit point
            tmp_paths.clear()  # (the teacher cache writes thousands of these: no stray syscalls)
            if durable:  # the renames live in the folders: a crash must not undo a commit
                for folder in dict.fromkeys([data_path.parent, meta_path.parent,
                                             *(m.parent for m in made)]):
                    _fsync_dir(folder)
            return ref
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            # A filesystem cannot hold both "a" and "a/b"; S3 could, but keys never need it.
            raise FailedPrecondition(
                f"artifact key {key!r} collides with an existing object or folder: {exc}"
            ) from exc
        finally:
            for tmp in tmp_paths:
                tmp.unlink(missing_ok=True)

    def _read_meta(self, key: str) -> StoredObject:
        try:
            meta = json.loads(self._meta_path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"artifact {key!r} not found in {self.base_uri}") from None
        except ValueError as exc:
            raise DataLoss(f"artifact {key!r} has an unreadable metadata record: {exc}") from exc
        return StoredObject(self.uri(key), meta["sha256"], meta["size_bytes"], meta["media_type"])

    def _open(self, key: str) -> tuple[BinaryIO, StoredObject, Callable[[], None]]:
        ref = self._read_meta(key)
        try:
            raw = open(self._data_path(key), "rb")  # VerifiedReader closes it
        except FileNotFoundError:
            raise DataLoss(f"artifact {key!r} is recorded but its file is missing") from None
        return raw, ref, raw.close

    def stat(self, key: str) -> StoredObject:
        validate_key(key)
        return self._read_meta(key)

    def exists(self, key: str) -> bool:
        validate_key(key)
        return self._meta_path(key).is_file()

    def modified(self, key: str) -> float:
        validate_key(key)
        try:  # the sidecar is written last: its time is the write's
            return self._meta_path(key).stat().st_mtime
        except FileNotFoundError:
            raise NotFound(f"artifact {key!r} not found") from None

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        # Walk only the folder the prefix points into; filter the rest by string prefix.
        start = self._meta_root.joinpath(*prefix.split("/")[:-1])
        keys = []
        for dirpath, _dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self._meta_root).as_posix()
            for name in filenames:
                if name.endswith(_META_SUFFIX):
                    key = name[: -len(_META_SUFFIX)]
                    key = key if rel_dir == "." else f"{rel_dir}/{key}"
                    if key.startswith(prefix):
                        keys.append(key)
        # S3 lists in UTF-8 byte order; match it so both backends enumerate alike.
        yield from sorted(keys, key=lambda k: k.encode("utf-8"))

    def delete(self, key: str) -> None:
        validate_key(key)
        self._meta_path(key).unlink(missing_ok=True)  # the object is gone from here on
        self._data_path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        count = super().delete_prefix(prefix)
        # Remove the folders left empty (a checkpoint folder should vanish, not linger).
        parent = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        for tree in (self.root, self._meta_root):
            _prune_empty_dirs(tree.joinpath(*parent.split("/")) if parent else tree, tree)
        return count


def _temp_in(folder: Path, created: list[Path], made: list[Path]) -> BinaryIO:
    """A fresh temp file in `folder` (same filesystem as the target, so os.replace is atomic),
    open for writing; its path is appended to `created`. The folder is made only when missing,
    and the folders made are appended to `made`."""
    for attempt in range(3):
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=_TMP_PREFIX)
            break
        except FileNotFoundError:  # a new folder, or a concurrent delete_prefix pruned it
            if attempt == 2:
                raise
            missing = folder
            while not missing.exists():
                made.append(missing)
                missing = missing.parent
            folder.mkdir(parents=True, exist_ok=True)
    created.append(Path(name))
    return open(fd, "wb")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune_empty_dirs(top: Path, root: Path) -> None:
    """rmdir every empty folder under `top` (bottom-up), never `root` itself."""
    if not top.is_dir():
        return
    for dirpath, _dirnames, _filenames in os.walk(top, topdown=False):
        if Path(dirpath) != root:
            try:
                Path(dirpath).rmdir()
            except OSError:
                pass  # not empty, or a concurrent writer just used it
