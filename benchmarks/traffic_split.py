"""A 90/10 canary split over 10,000 requests lands within 3 sigma of the binomial expectation
(issue 22), for both ways the router picks: a fresh random point per request (no sticky key)
and a sticky key per request (random user ids, hashed: services/common/specs/routing.py).

    python -m benchmarks.traffic_split [--requests 10000] [--percent 10] [--seed 0]

Also measured: how many users a sticky split moves when the canary grows from 10 % to 25 %
(only users joining the canary should move: the expected share is 15 %, none leave it). Ends with
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.result import emit  # noqa: E402
from distill.v1 import common_pb2, gateway_pb2  # noqa: E402
from services.common.specs.routing import choose, routing  # noqa: E402

PRIMARY = gateway_pb2.AliasTarget(teacher=common_pb2.ModelSpec(model="teacher"))
CANARY = gateway_pb2.AliasTarget(job="jobs/student")


def rules(percent: int):
    return routing(gateway_pb2.AliasRouting(
        canary=[gateway_pb2.WeightedTarget(target=CANARY, percent=percent)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--percent", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, p = args.requests, args.percent / 100
    expected, sigma = n * p, math.sqrt(n * p * (1 - p))
    split = rules(args.percent)
    rng = random.Random(args.seed)
    random_hits = sum(choose(split, PRIMARY, "bot", None, rng) == CANARY for _ in range(n))
    users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    sticky = [choose(split, PRIMARY, "bot", u, rng) == CANARY for u in users]
    grown = [choose(rules(25), PRIMARY, "bot", u, rng) == CANARY for u in users]
    figures = {
        "requests": n, "canary_percent": args.percent, "expected": expected,
        "sigma": round(sigma, 2),
        "random_canary": random_hits, "random_z": round((random_hits - expected) / sigma, 2),
        "sticky_canary": sum(sticky), "sticky_z": round((sum(sticky) - expected) / sigma, 2),
        "grow_to_25_moved_in": sum(g and not s for s, g in zip(sticky, grown, strict=True)),
        "grow_to_25_moved_out": sum(s and not g for s, g in zip(sticky, grown, strict=True)),
    }
    figures["pass"] = (abs(figures["random_z"]) <= 3 and abs(figures["sticky_z"]) <= 3
                       and figures["grow_to_25_moved_out"] == 0)
    emit("traffic_split", figures)
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
