"""`python -m services.common.health_probe HOST:PORT`: exit 0 when that server is SERVING.

A container health check through the standard gRPC health protocol (grpc.health.v1 Check, the
overall status), for docker compose (deploy/compose.yaml); Kubernetes uses its native gRPC probe.
Prints the status; exits 1 for NOT_SERVING, UNKNOWN, or no answer within the timeout. A server
that serves TLS is probed with `--ca-file` (the CA that signed its certificate).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_health(address: str, timeout: float = 2.0, ca_file: Path | None = None) -> str:
    """The overall health status name ("SERVING", ...), or "UNREACHABLE"."""
    channel = grpc.insecure_channel(address) if ca_file is None else grpc.secure_channel(
        address, grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes()))
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.health_probe",
        description="exit 0 when the gRPC health status of HOST:PORT is SERVING, else 1",
    )
    parser.add_argument("address", help="HOST:PORT of a distill service")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--ca-file", type=Path,
                        help="PEM CA of the server's certificate, for a server serving TLS")
    args = parser.parse_args(argv)
    status = check_health(args.address, timeout=args.timeout, ca_file=args.ca_file)
    print(f"{args.address} {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    raise SystemExit(main())
