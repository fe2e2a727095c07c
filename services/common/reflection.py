"""Server reflection that also answers `Service.Method` symbols (`grpcurl describe` on a method).

grpcio-reflection answers every FileContainingSymbol request with the descriptor pool's
`FindFileContainingSymbol`. protobuf's upb pool (the default implementation) indexes messages,
fields, enums, enum values, services and extensions there, but not methods, so grpcurl's
`describe pkg.Service.Method` got NOT_FOUND ("Symbol not found"). The library takes the pool as
an argument, so the fix is a pool that resolves methods through their service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection


class MethodResolvingPool:
    """A descriptor pool whose FindFileContainingSymbol also finds `package.Service.Method`."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:  # everything else is the wrapped pool's
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:  # noqa: N802 - the pool's API
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
        try:
            service = self._pool.FindServiceByName(service_name)
        except KeyError:
            service = None
        if service is None or method not in service.methods_by_name:
            raise KeyError(f"Couldn't find symbol {symbol}")
        return service.file


def enable(service_names: Sequence[str], server: grpc.aio.Server) -> None:
    """Reflection for `service_names` and the reflection service itself."""
    reflection.enable_server_reflection([*service_names, reflection.SERVICE_NAME], server,
                                        pool=MethodResolvingPool())
