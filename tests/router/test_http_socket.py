"""The router's HTTP connections have Nagle off: an answer's header and body go out at once
instead of the body waiting for the client's delayed ACK (about 40 ms per request on Linux)."""

from __future__ import annotations

import asyncio
import socket

from services.router.http_api import HttpApi
from services.router.settings import RouterSettings
from tests.fixtures.waits import async_wait_for


async def test_accepted_connections_have_tcp_nodelay():
    # No request is made: only the socket counts.
    api = HttpApi(RouterSettings(), router=None, authenticator=None)
    await api.start("127.0.0.1", 0)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", api.port)
        connections = api._server.server_state.connections
        await async_wait_for(lambda: connections, "the router to accept the connection")
        (accepted,) = connections
        sock = accepted.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
    finally:
        await api.stop()
