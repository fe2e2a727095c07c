"""Drops files a device check never loads from downloaded wheels, so that they travel in one
device call (64 MiB with the working tree): `python benchmarks/slim_wheels.py .whl`.

unsloth ships its web UI (studio/, 80 of its 88 MB) and bitsandbytes one library per CUDA and
ROCm version (129 MB); the device's torch is built for CUDA 13, so only its cuda13x libraries
stay. The wheel's RECORD loses the dropped files' lines too, so that pip installs it as is.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

DROP = {
    "unsloth": re.compile(r"studio/"),
    "bitsandbytes": re.compile(r"bitsandbytes/libbitsandbytes_(rocm|cuda1[0-2])"),
}


def slim(wheel: Path, drop: re.Pattern[str]) -> int:
    """Rewrites `wheel` without the entries `drop` matches at their start; returns how many."""
    slimmed = wheel.with_suffix(".slim")
    dropped = 0
    with zipfile.ZipFile(wheel) as source, \
            zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if drop.match(info.filename):
                dropped += 1
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not drop.match(line.decode()))
            target.writestr(info, data)
    slimmed.replace(wheel)
    return dropped


def main(folder: Path) -> None:
    for wheel in sorted(folder.glob("*.whl")):
        drop = DROP.get(wheel.name.split("-")[0])
        if drop is not None:
            before = wheel.stat().st_size
            count = slim(wheel, drop)
            print(f"{wheel.name}: dropped {count} files, "
                  f"{before / 2**20:.1f} -> {wheel.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".whl"))
