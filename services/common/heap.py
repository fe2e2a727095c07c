"""The cyclic garbage collector in long-running processes: what startup made stays out of it."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collects once, then moves every object alive now (modules, classes, the gRPC and SDK
    imports: about 110,000 in the generator, 196,000 in the trainer) to the collector's
    permanent generation. Otherwise each full collection walks them all with the event loop
    stopped: in the generator at 1,000 teacher calls that was up to two pauses of 80-105 ms,
    and every call in flight waited (benchmarks/RESULTS.md, generator_fanout). Frozen objects
    are still freed when their last reference goes; only a cycle among them would stay, and
    startup's cycles were just collected."""
    gc.collect()
    gc.freeze()
