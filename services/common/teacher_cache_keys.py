"""Which teacher-cache entries a run used: the manifest each generator run writes next to its
outputs (`jobs/{run id}/teacher-cache-keys/{run}.txt`, one cache key per line), so that the
gateway can delete, with the last job that used them, the entries no other job uses
(`services/gateway/cache_release.py`).

A run lists every key it read from the cache or wrote to it. Keys go to a temp file as the run
goes, not to memory: a 1 GiB dataset at 16 samples a prompt uses millions of them.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator

from services.common.storage import ArtifactStore

MEDIA_TYPE = "text/plain"
# What `teacher_cache.cache_key` makes; a line that is anything else names no entry.
_KEY = re.compile(rb"[0-9a-f]{64}")


class KeyLog:
    """The keys one run used, spooled to a temp file; `store` writes them as its manifest."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self.count = 0

    def add(self, key: str) -> None:
        self._file.write(key.encode("ascii") + b"\n")
        self.count += 1

    def store(self, store: ArtifactStore, key: str) -> None:
        """Blocking: the keys so far as the object `key`."""
        self._file.flush()
        self._file.seek(0)
        store.put(key, self._file, media_type=MEDIA_TYPE)
        self._file.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._file.close()


def read_keys(store: ArtifactStore, key: str) -> Iterator[str]:
    """The cache keys a manifest (or a released copy of manifests) names, streamed. Blocking."""
    with store.open(key) as raw, io.BufferedReader(raw) as lines:
        for line in lines:
            if _KEY.fullmatch(line := line.rstrip(b"\n")):
                yield line.decode("ascii")
