"""SetAlias with routing over real gRPC: stored per version, job targets resolved to their GGUF,
bad rules refused naming the field, rollback restoring the version's routing, and an old
database (no routing column) opened as it is."""

from __future__ import annotations

import sqlite3

import grpc
import pytest

from distill.client import DistillClientError
from distill.v1 import gateway_pb2
from services.gateway.job_store import JobStore
from tests.fixtures.gateway import running_gateway

ROUTING = {"canary": [{"target": {"teacher": {"model": "gpt-4o"}}, "percent": 10}],
           "shadows": [{"teacher": {"model": "claude-haiku"}}],
           "validator": {"labels": ["positive", "negative"], "maxLatencySeconds": 2.0,
                         "fallback": {"model": "gpt-4o"}},
           "capture": {"redact": ["emails"]}}


@pytest.fixture
def client(tmp_path):
    with running_gateway(tmp_path) as (client, _):
        yield client


def test_routing_is_kept_per_version_and_rollback_restores_it(client):
    first = client.set_alias("bot", teacher="gpt-4o-mini", routing=ROUTING,
                             description="canary 10 % on gpt-4o")
    assert first.routing.canary[0].percent == 10
    assert list(first.routing.validator.labels) == ["positive", "negative"]
    second = client.set_alias("bot", teacher="gpt-4o-mini", expected_version=1)
    assert not second.HasField("routing") and second.history[0].routing.canary[0].percent == 10
    back = client.rollback_alias("bot", to_version=1)
    assert back.version == 3 and back.routing == first.routing
    assert client.get_alias("bot").routing.shadows[0].teacher.model == "claude-haiku"


@pytest.mark.parametrize(("routing", "message"), [
    ({"canary": [{"target": {"teacher": {"model": "a"}}, "percent": 101}]},
     "routing.canary[0].percent: must be in [1, 100], got 101"),
    ({"canary": [{"target": {"job": "jobs/nope"}, "percent": 5}]}, "jobs/nope"),
    ({"validator": {"judge": {"llm": {}}}}, "routing.validator.judge: a validator runs on"),
    ({"capture": {"redactPatterns": ["(x)\\1"]}}, "routing.capture.patterns[0]: invalid regex"),
])
def test_bad_routing_is_refused_naming_the_field_and_nothing_is_stored(client, routing,
                                                                       message):
    with pytest.raises(DistillClientError) as caught:
        client.set_alias("bot", teacher="gpt-4o-mini", routing=routing)
    assert caught.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert message in str(caught.value)
    with pytest.raises(DistillClientError) as caught:
        client.get_alias("bot")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_a_database_from_before_routing_opens_and_keeps_its_aliases(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:
        old.execute("CREATE TABLE alias_versions (name TEXT NOT NULL, version INTEGER NOT NULL, "
                    "target BLOB NOT NULL, create_time REAL NOT NULL, "
                    "PRIMARY KEY (name, version))")
        target = gateway_pb2.AliasTarget(job="jobs/x").SerializeToString()
        old.execute("INSERT INTO alias_versions VALUES ('bot', 1, ?, 0)", (target,))
    store = JobStore(db)
    alias = store.get_alias("bot")
    assert alias.target.job == "jobs/x" and not alias.HasField("routing")
    store.set_alias("bot", alias.target, 1, routing=gateway_pb2.AliasRouting(
        capture=gateway_pb2.TraceCapture(disabled=True)))
    assert store.get_alias("bot").routing.capture.disabled
