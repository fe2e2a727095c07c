"""SQLite job store and aliases: idempotent creation, paging, compare-and-swap, rollback."""

from __future__ import annotations

import threading

import pytest

from distill.v1 import common_pb2, gateway_pb2
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from services.gateway.aliases import Aliases
from services.gateway.job_store import JobStore, now


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def job(i: int, request_id: str = "", state=gateway_pb2.JOB_STATE_PENDING) -> gateway_pb2.Job:
    j = gateway_pb2.Job(name=f"jobs/j{i:03d}", request_id=request_id, state=state)
    j.create_time.CopyFrom(now())
    j.create_time.nanos = i  # distinct, increasing
    j.create_time.seconds = 1_700_000_000 + i
    return j


def test_repeated_request_id_returns_the_same_job(store):
    first, created = store.create_job(job(1, request_id="r-1"))
    again, created_again = store.create_job(job(2, request_id="r-1"))
    assert created and not created_again and again.name == first.name == "jobs/j001"
    assert len(store.list_jobs()[0]) == 1


def test_job_round_trip_and_survives_reopen(tmp_path):
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    j = job(1)
    store.create_job(j)
    j.state = gateway_pb2.JOB_STATE_TRAINING
    j.teacher_usage.cost_usd = 1.25
    store.save_job(j)
    store.close()
    reopened = JobStore(path)
    got = reopened.get_job("jobs/j001")
    assert got.state == gateway_pb2.JOB_STATE_TRAINING and got.teacher_usage.cost_usd == 1.25
    assert [x.name for x in reopened.unfinished_jobs()] == ["jobs/j001"]


def test_list_jobs_pages_stop_at_the_byte_budget(store):
    for i in range(5):
        j = job(i)
        j.spec.system_prompt = "x" * 1000 * (i + 1)  # j004 is the largest, and newest
        store.create_job(j)
    pages, token = [], ""
    while True:
        jobs, token = store.list_jobs(page_token=token, page_bytes=6000)
        pages.append([j.name.removeprefix("jobs/") for j in jobs])
        assert sum(j.ByteSize() for j in jobs) <= 6000 or len(jobs) == 1
        if not token:
            break
    # 5000 alone; 4000 (+3000 would pass 6000); 3000+2000 (+1000 would pass); 1000.
    assert pages == [["j004"], ["j003"], ["j002", "j001"], ["j000"]]
    # A row larger than the whole budget still comes, alone: the listing always moves on.
    assert [j.name for j in store.list_jobs(page_bytes=10)[0]] == ["jobs/j004"]


def test_unknown_and_malformed_job_names(store):
    with pytest.raises(NotFound):
        store.get_job("jobs/nope")
    with pytest.raises(InvalidArgument, match="jobs/"):
        store.get_job("nope")


def test_list_jobs_pages_newest_first_and_filters_by_state(store):
    for i in range(7):
        state = gateway_pb2.JOB_STATE_SUCCEEDED if i % 2 else gateway_pb2.JOB_STATE_FAILED
        store.create_job(job(i, state=state))
    seen, token = [], ""
    while True:
        page, token = store.list_jobs(page_size=3, page_token=token)
        seen += [j.name for j in page]
        if not token:
            break
    assert seen == [f"jobs/j{i:03d}" for i in reversed(range(7))]
    succeeded, _ = store.list_jobs(states=[gateway_pb2.JOB_STATE_SUCCEEDED])
    assert [j.name for j in succeeded] == ["jobs/j005", "jobs/j003", "jobs/j001"]
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_jobs(page_token="garbage!")


def teacher(model: str) -> gateway_pb2.AliasTarget:
    return gateway_pb2.AliasTarget(teacher=common_pb2.ModelSpec(model=model))


def test_alias_compare_and_swap(store):
    aliases = Aliases(store)
    assert aliases.set("support-bot", teacher("gpt-4o"), expected_version=0).version == 1
    with pytest.raises(Aborted, match="version 1, not 0"):
        aliases.set("support-bot", teacher("gpt-4o-mini"), expected_version=0)
    second = aliases.set("support-bot", teacher("gpt-4o-mini"), expected_version=1)
    assert second.version == 2 and second.target.teacher.model == "gpt-4o-mini"
    assert [h.version for h in second.history] == [1, 2]
    with pytest.raises(Aborted, match="does not exist"):
        aliases.set("other", teacher("x"), expected_version=3)


def test_concurrent_compare_and_swap_has_one_winner(store):
    aliases = Aliases(store)
    aliases.set("a", teacher("v1"), 0)
    outcomes = []

    def attempt(model):
        try:
            outcomes.append(aliases.set("a", teacher(model), expected_version=1).version)
        except Aborted:
            outcomes.append("aborted")

    threads = [threading.Thread(target=attempt, args=(f"m{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=str) == [2] + ["aborted"] * 7


def test_rollback_restores_an_earlier_target_as_a_new_version(store):
    aliases = Aliases(store)
    for version, model in enumerate(["a", "b", "c"]):
        aliases.set("x", teacher(model), expected_version=version)
    back = aliases.rollback("x", to_version=0, expected_version=3)
    assert (back.version, back.target.teacher.model) == (4, "b")
    back = aliases.rollback("x", to_version=1, expected_version=0)
    assert (back.version, back.target.teacher.model) == (5, "a")
    with pytest.raises(FailedPrecondition, match="no earlier version 9"):
        aliases.rollback("x", to_version=9, expected_version=0)
    with pytest.raises(Aborted):
        aliases.rollback("x", to_version=1, expected_version=2)
    with pytest.raises(NotFound):
        aliases.rollback("missing", 0, 0)


@pytest.mark.parametrize("name", ["", "UPPER", "-lead", "trail-", "has space", "a" * 64, "a/b"])
def test_bad_alias_names(store, name):
    with pytest.raises(InvalidArgument, match="name"):
        Aliases(store).set(name, teacher("x"), 0)


def test_job_target_must_have_succeeded(store):
    aliases = Aliases(store)
    store.create_job(job(1, state=gateway_pb2.JOB_STATE_TRAINING))
    with pytest.raises(FailedPrecondition, match="TRAINING, not SUCCEEDED"):
        aliases.set("s", gateway_pb2.AliasTarget(job="jobs/j001"), 0)
    done = job(2, state=gateway_pb2.JOB_STATE_SUCCEEDED)
    done.outputs.student_gguf.uri = "file:///x/q4_k_m.gguf"
    store.create_job(done)
    alias = aliases.set("s", gateway_pb2.AliasTarget(job="jobs/j002"), 0)
    assert alias.target.gguf.uri == "file:///x/q4_k_m.gguf"
    with pytest.raises(NotFound):
        aliases.set("s", gateway_pb2.AliasTarget(job="jobs/none"), 1)


def test_progress_saves_leave_the_spec_alone(tmp_path):
    """The spec is written once; a progress save's SQL neither names nor carries it."""
    store = JobStore(tmp_path / "jobs.db")
    j = job(1)
    j.spec.system_prompt = "p" * 200_000
    store.create_job(j)
    statements = []
    store._db.set_trace_callback(statements.append)
    for done in range(1, 4):
        j.progress.done = done
        store.save_job(j)
    store._db.set_trace_callback(None)
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 3 and not any("spec" in s for s in updates), updates
    job_bytes, spec_bytes = store._db.execute(
        "SELECT length(job), length(spec) FROM jobs").fetchone()
    assert job_bytes < 1000 and spec_bytes > 200_000  # the row rewritten is the small part
    got = store.get_job(j.name)
    assert got.progress.done == 3 and got.spec.system_prompt == j.spec.system_prompt
    store.close()


def test_a_store_from_before_the_spec_column_is_split_on_open(tmp_path):
    import sqlite3
    path = tmp_path / "old.db"
    old = gateway_pb2.Job(name="jobs/old", state=gateway_pb2.JOB_STATE_TRAINING,
                          spec=gateway_pb2.DistillSpec(system_prompt="kept"))
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state INTEGER "
               "NOT NULL, create_time REAL NOT NULL, job BLOB NOT NULL)")
    db.execute("INSERT INTO jobs VALUES ('old', NULL, ?, 1.0, ?)",
               (old.state, old.SerializeToString()))
    db.commit()
    db.close()
    store = JobStore(path)
    got = store.get_job("jobs/old")
    got.progress.done = 7
    store.save_job(got)
    again = store.get_job("jobs/old")
    assert again.spec.system_prompt == "kept" and again.progress.done == 7
    store.close()
