"""Student GGUFs on local disk, read once from the artifact store and checked by sha256.

The router reads the store every service shares (as the exporter and the trainer do) rather
than streaming the file through the gateway; the store's reader verifies the bytes against the
sha256 recorded when they were written, and that must be the alias's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from distill.v1 import common_pb2
from services.common import errors
from services.common.storage import ArtifactStore


class StudentFiles:
    def __init__(self, store: ArtifactStore, folder: Path) -> None:
        self._store = store
        self._folder = folder
        self._locks: dict[str, asyncio.Lock] = {}

    async def path(self, ref: common_pb2.ArtifactRef) -> Path:
        """The GGUF `ref` names, on disk; named by its sha256, so a file there is the one."""
        if not ref.sha256:
            raise errors.FailedPrecondition(f"student GGUF {ref.uri}: its ref has no sha256")
        dest = self._folder / f"{ref.sha256}.gguf"
        async with self._locks.setdefault(ref.sha256, asyncio.Lock()):
            if not dest.is_file():
                await asyncio.to_thread(self._download, ref, dest)
        return dest

    def _download(self, ref: common_pb2.ArtifactRef, dest: Path) -> None:
        key = self._store.key_from_uri(ref.uri)
        recorded = self._store.stat(key).sha256
        if recorded != ref.sha256:
            raise errors.DataLoss(f"student GGUF {ref.uri}: the store holds sha256 {recorded}, "
                                  f"the alias names {ref.sha256}")
        self._store.get_file(key, dest)  # appears only once its bytes verified
