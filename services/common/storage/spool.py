"""A JSONL artifact assembled on local disk: lines come in any order, as a stream's results
finish, and are stored in the order of their positions at the end.

A job's output (the generator's candidates, the judge's curated rows) can outgrow a service's
memory (a 1 GiB dataset, up to 16 samples a prompt), so it is spooled to a temp file rather than
held until the stream ends.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from services.common.storage.base import ArtifactStore, StoredObject


class LineSpool:
    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._spans: dict[int, tuple[int, int]] = {}  # position -> (offset, length)
        self._size = 0

    def __enter__(self) -> LineSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def add(self, position: int, line: bytes) -> None:
        """One line (ending in a newline) at `position`; positions may come in any order and
        may leave gaps."""
        self._spans[position] = (self._size, len(line))
        self._file.write(line)
        self._size += len(line)

    def store(self, store: ArtifactStore, key: str,
              media_type: str = "application/jsonl") -> StoredObject:
        """Blocking: the lines in position order into one file, then that file to the store."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, Path(key).name)
            with path.open("wb") as ordered:
                for position in sorted(self._spans):
                    offset, length = self._spans[position]
                    self._file.seek(offset)
                    ordered.write(self._file.read(length))
            return store.put_file(key, path, media_type=media_type)
