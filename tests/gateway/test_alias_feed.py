"""WatchAliases: a snapshot, then every alias change in order, to every watcher alike; resuming
after a sequence; a slow watcher dropped to a fresh snapshot instead of holding up SetAlias."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import pytest

from distill.client import DistillClientError, Distiller
from distill.v1 import gateway_pb2
from services.gateway.alias_feed import AliasFeed
from services.gateway.job_store import JobStore
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from tests.fixtures.inprocess import serve_in_thread
from tests.fixtures.waits import async_wait_for, wait_for


def teacher(model: str) -> gateway_pb2.AliasTarget:
    return gateway_pb2.AliasTarget(teacher={"model": model})


def held(replies) -> dict[str, tuple[int, str]]:
    """What a watcher holds after applying `replies`: alias -> (version, teacher model)."""
    state: dict[str, tuple[int, str]] = {}
    for reply in replies:
        if reply.HasField("snapshot"):
            state = {a.name: (a.version, a.target.teacher.model) for a in reply.snapshot.aliases}
        else:
            state[reply.change.name] = (reply.change.version, reply.change.target.teacher.model)
    return state


def events(replies) -> list[tuple]:
    return [(r.sequence, "snapshot", len(r.snapshot.aliases)) if r.HasField("snapshot") else
            (r.sequence, r.change.name, r.change.version, r.change.target.teacher.model)
            for r in replies]


@pytest.fixture
def gateway(tmp_path) -> Iterator[Distiller]:
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db", alias_watch_backlog=8)
    with serve_in_thread(settings, lambda: build(settings)) as address:
        with Distiller(address) as client:
            yield client


class Watcher:
    """Reads a WatchAliases stream on a thread into `replies` until closed."""

    def __init__(self, client: Distiller, resume_after: int = 0) -> None:
        self.replies: list[gateway_pb2.WatchAliasesResponse] = []
        self._stream = client._stub.WatchAliases(
            gateway_pb2.WatchAliasesRequest(resume_after=resume_after), metadata=client._metadata)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self.replies.extend(self._stream)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise

    def wait_for(self, count: int) -> list[gateway_pb2.WatchAliasesResponse]:
        wait_for(lambda: len(self.replies) >= count,
                 lambda: f"{count} replies, got {events(self.replies)}")
        return self.replies[:count]

    def close(self) -> None:
        self._stream.cancel()
        self._thread.join(30)


def test_two_watchers_see_the_same_changes_in_order(gateway):
    gateway.set_alias("support", teacher="gpt-4o", expected_version=0)
    first, second = Watcher(gateway), Watcher(gateway)
    try:
        assert events(first.wait_for(1)) == events(second.wait_for(1)) == [(1, "snapshot", 1)]
        gateway.set_alias("billing", teacher="gpt-4o-mini", expected_version=0)
        gateway.set_alias("support", teacher="claude-haiku", expected_version=1)
        gateway.rollback_alias("support")
        expected = [
            (1, "snapshot", 1),
            (2, "billing", 1, "gpt-4o-mini"),
            (3, "support", 2, "claude-haiku"),
            (4, "support", 3, "gpt-4o"),  # the rollback: a new version, the old target
        ]
        assert events(first.wait_for(4)) == expected
        assert events(second.wait_for(4)) == expected
        assert held(first.replies) == {a.name: (a.version, a.target.teacher.model)
                                       for a in gateway.list_aliases()}
    finally:
        first.close()
        second.close()


def test_a_reconnecting_watcher_resumes_after_its_last_sequence(gateway):
    gateway.set_alias("support", teacher="gpt-4o", expected_version=0)
    watcher = Watcher(gateway)
    last = watcher.wait_for(1)[-1].sequence
    watcher.close()
    gateway.set_alias("support", teacher="gpt-4o-mini", expected_version=1)
    gateway.set_alias("billing", teacher="gpt-4o", expected_version=0)
    resumed = Watcher(gateway, resume_after=last)
    try:
        assert events(resumed.wait_for(2)) == [(2, "support", 2, "gpt-4o-mini"),
                                               (3, "billing", 1, "gpt-4o")]
    finally:
        resumed.close()
    # Further back than the backlog (8), or past the end of this store's log: a snapshot.
    for version in range(2, 12):
        gateway.set_alias("support", teacher=f"m{version}", expected_version=version)
    for resume_after in (1, 500):
        late = Watcher(gateway, resume_after=resume_after)
        try:
            assert events(late.wait_for(1)) == [(13, "snapshot", 2)]
        finally:
            late.close()


def test_the_sdk_generator_yields_snapshot_then_changes(gateway):
    gateway.set_alias("support", teacher="gpt-4o", expected_version=0)
    stream = gateway.watch_aliases()
    try:
        assert next(stream).snapshot.aliases[0].name == "support"
        gateway.set_alias("support", teacher="gpt-4o-mini", expected_version=1)
        change = next(stream)
        assert (change.sequence, change.change.version) == (2, 2)
    finally:
        stream.close()


def test_negative_resume_after_is_refused(gateway):
    with pytest.raises(DistillClientError) as raised:
        next(gateway.watch_aliases(resume_after=-1))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "resume_after" in raised.value.message


def test_an_unread_stream_does_not_hold_up_set_alias(gateway):
    """300 changes while a watcher reads nothing (backlog 8): every SetAlias answers, and the
    watcher, once it reads, ends up holding exactly what the store holds."""
    watcher_stream = gateway._stub.WatchAliases(gateway_pb2.WatchAliasesRequest())
    first = next(watcher_stream)
    assert first.HasField("snapshot")
    for version in range(300):
        gateway.set_alias(f"a{version % 3}", teacher=f"m{version}",
                          expected_version=version // 3)
    replies = [first]
    for reply in watcher_stream:
        assert reply.sequence > replies[-1].sequence
        replies.append(reply)
        if reply.sequence == 300:
            break
    watcher_stream.cancel()
    assert held(replies) == {a.name: (a.version, a.target.teacher.model)
                             for a in gateway.list_aliases()}


def test_a_project_watches_its_own_aliases_and_the_admin_key_every_project(tmp_path):
    admin_key = "admin-key-for-tests-" + "a" * 24
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db", admin_token=admin_key)
    with serve_in_thread(settings, lambda: build(settings)) as address, \
            Distiller(address, token=admin_key) as admin, \
            Distiller(address, token=admin.create_api_key("alpha").key) as alpha, \
            Distiller(address, token=admin.create_api_key("beta").key) as beta:
        alpha.set_alias("support", teacher="gpt-4o", expected_version=0)
        watchers = {name: Watcher(client) for name, client in
                    (("alpha", alpha), ("beta", beta), ("admin", admin))}
        try:
            for watcher in watchers.values():
                watcher.wait_for(1)  # its snapshot: it watches from here on
            beta.set_alias("support", teacher="claude-haiku", expected_version=0)
            alpha.set_alias("support", teacher="gpt-4o-mini", expected_version=1)
            seen = {name: watcher.wait_for(count) for (name, watcher), count in
                    zip(watchers.items(), (2, 2, 3), strict=True)}
        finally:
            for watcher in watchers.values():
                watcher.close()
    projects = {name: [(a.project, a.name, a.version) for r in replies
                       for a in (r.snapshot.aliases if r.HasField("snapshot") else [r.change])]
                for name, replies in seen.items()}
    assert projects == {
        "alpha": [("alpha", "support", 1), ("alpha", "support", 2)],
        "beta": [("beta", "support", 1)],
        "admin": [("alpha", "support", 1), ("beta", "support", 1), ("alpha", "support", 2)],
    }
    assert events(seen["beta"])[-1][0] == 2  # its change's sequence: alpha's first was 1


# -- the feed itself, on a real store ----------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Iterator[JobStore]:
    store = JobStore(tmp_path / "gateway.db")
    yield store
    store.close()


async def test_a_slow_watcher_is_dropped_to_a_snapshot(store):
    feed = AliasFeed(store, backlog=4)
    watch = feed.watch(0, None)
    assert (await anext(watch)).HasField("snapshot")
    for version in range(10):  # more than the backlog while the watcher reads nothing
        store.set_alias("support", teacher(f"m{version}"), version)
    resync = await anext(watch)
    assert resync.sequence == 10
    assert [(a.name, a.version, a.target.teacher.model) for a in resync.snapshot.aliases] == [
        ("support", 10, "m9")]
    store.set_alias("support", teacher("after"), 10)  # and then changes again
    after = await anext(watch)
    assert (after.sequence, after.change.target.teacher.model) == (11, "after")
    await watch.aclose()


async def test_a_change_committed_on_another_thread_is_delivered(store):
    """The job runner's promotion writes through the store; from a worker thread it reaches the
    watchers through the event loop."""
    feed = AliasFeed(store, backlog=4)
    seen: list[gateway_pb2.WatchAliasesResponse] = []

    async def read() -> None:
        async for reply in feed.watch(0, None):
            seen.append(reply)

    reader = asyncio.create_task(read())
    await async_wait_for(lambda: len(seen) == 1, "the snapshot")
    await asyncio.to_thread(store.set_alias, "support", teacher("gpt-4o"), 0)
    await async_wait_for(lambda: len(seen) == 2, "the change")
    assert (seen[1].sequence, seen[1].change.name) == (1, "support")
    feed.close()
    await asyncio.wait_for(reader, 30)  # close() ends the watch
