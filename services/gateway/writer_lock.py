"""One gateway per job store: an exclusive lock on a sidecar file, held for the gateway's life.

Two gateways on one SQLite file would both resume every unfinished job and pay twice. The lock is
`flock` on `<db>.lock`: the kernel drops it when the process dies, however it dies, so a crashed
gateway never blocks its restart and there is no stale lock to clean up. The holder writes its
pid into the file so a refused gateway can say who holds it. (`flock` is per host: a database on
a network file system shared between hosts is not protected.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from services.common.errors import StartupRefused


class WriterLock:
    def __init__(self, db_path: Path | str) -> None:
        self.path = Path(f"{db_path}.lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Python's descriptors are not inherited by child processes, so only this process holds it.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupRefused(
                f"another gateway (pid {holder}) is using the job store {db_path} (locked through "
                f"{self.path}); one gateway per job store, or both would resume every unfinished "
                "job. Stop it, or set DISTILL_GATEWAY_DB_PATH to another database.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
