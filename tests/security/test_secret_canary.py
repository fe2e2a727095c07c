"""Issue 19: a secret canary. A whole job (five processes, S3 store, the fake teacher that
insists on the key) and a job whose teacher echoes the key back in its 401, then every place a
secret could land is searched: the services' logs, every object in the store (GGUF, report and
candidates included), the job rows and event log (the SQLite file), the errors and the
downloaded report. The teacher key and the internal credential occur 0 times."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.v1 import common_pb2, gateway_pb2
from tests.e2e.conftest import SMOLLM2_TRAINING, TEACHER_KEY, write_dataset

# Every test here: a connection beyond loopback fails it (conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")
State = gateway_pb2


def job_spec(suite, dataset: Path, student: Path, **fields) -> gateway_pb2.DistillSpec:
    teacher = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="gpt-4o-mini",
                                   endpoint="fake-openai", max_tokens=8)
    judge = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    return suite.client.spec(
        dataset=suite.client.upload(dataset), teacher=teacher, student=str(student), judge=judge,
        n_samples=4, top_k=2, min_score=5,
        training={**SMOLLM2_TRAINING, "batch_size": 2, "max_seq_length": 64},
        # Room for the smoke test to see the student stop (tests/e2e/test_pipeline.py).
        export={"quantizations": ["QUANTIZATION_TYPE_Q8_0"], "smoke_max_tokens": 256},
        **fields)


def store_objects(s3_server, bucket: str) -> dict[str, bytes]:
    client = s3_server.client()
    found = {}
    for entry in client.list_objects(bucket, recursive=True):
        reply = client.get_object(bucket, entry.object_name)
        try:
            found[entry.object_name] = reply.read()
        finally:
            reply.close()
            reply.release_conn()
    return found


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a whole job with SmolLM2 on the CPU, then a failing one
def test_no_secret_lands_anywhere(suite, s3_server, tmp_path, tiny_llama_dir):
    from services.common.models import prepare_smollm2
    from tests.fixtures.tiny_llama import shared_cache_dir

    student = prepare_smollm2(shared_cache_dir())  # a student that learns to stop in 4 steps
    internal = suite.suite.env["DISTILL_INTERNAL_TOKEN"]
    secrets = [TEACHER_KEY.encode(), internal.encode()]
    # The whole-job test's teacher and job (tests/e2e/test_pipeline.py): 4 steps on these teach
    # SmolLM2 the answer and to stop, which the exporter's smoke test needs.
    suite.fake.configure(api_key=TEACHER_KEY, replies=["positive", "negative", "Positive!", "meh"])

    good = suite.client.distill(job_spec(
        suite, write_dataset(tmp_path / "d.jsonl", 6), student,
        eval={"holdout_fraction": 0.5, "promote_min_ratio": 0, "promote_min_pass_rate": 0}))
    final = suite.client.wait(good.name, timeout=1200)
    assert final.state == State.JOB_STATE_SUCCEEDED, f"{final.error}\n{suite.logs()}"
    assert suite.fake.server.keys_seen == {TEACHER_KEY}  # the key was really used
    (tmp_path / "out").mkdir()
    gguf = suite.client.download(final.outputs.student_gguf.uri, tmp_path / "out" / "s.gguf")
    assert gguf.read_bytes()[:4] == b"GGUF"
    report = suite.client.download_report(good.name, tmp_path / "out" / "report")

    # A teacher that answers 401 with the key it was sent in its message.
    suite.fake.configure(api_key="sk-the-provider-wants-another")
    uncached = tmp_path / "e.jsonl"  # prompts the teacher cache has no answer for
    uncached.write_text('{"prompt": "Another review: dull. Sentiment?", "response": "negative"}\n'
                        * 2)
    bad = suite.client.distill(job_spec(suite, uncached, tiny_llama_dir))
    failed = suite.client.wait(bad.name, timeout=300)
    assert failed.state == State.JOB_STATE_FAILED, failed
    assert "HTTP 401" in failed.error.message, failed.error
    events = "\n".join(e.message for e in suite.client.logs(bad.name))

    bucket = suite.suite.env["DISTILL_STORE_URL"].removeprefix("s3://").split("/")[0]
    objects = store_objects(s3_server, bucket)
    assert any(name.endswith(".gguf") for name in objects)
    assert any(name.endswith("index.html") for name in objects)
    places = {
        **{f"store:{name}": data for name, data in objects.items()},
        **{f"log:{name}": process.log_path.read_bytes()
           for name, process in suite.suite.processes.items()},
        **{f"file:{p}": p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()},
        **{f"db:{p.name}": p.read_bytes() for p in tmp_path.glob("gateway.db*")},
        "errors": (str(failed.error) + "\n" + events).encode(),
        "jobs": b"".join(j.SerializeToString() for j in suite.client.list()),
    }
    assert report.exists() and len(places) > 10
    leaks = [where for where, data in places.items() for secret in secrets if secret in data]
    assert leaks == []
