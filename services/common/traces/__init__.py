"""Traces: every routed request and its answer, recorded off the hot path as JSONL segments that
are datasets in the format the gateway already accepts (`services/common/datasets.py`).

- `records`: one trace, as a dataset line (the conversation plus what served it);
- `redaction`: per-alias rules applied before anything is written;
- `layout`: `traces/{project}/{alias}/{YYYY-MM-DD}/{segment}.jsonl` keys;
- `recorder`: the bounded queue and the batch writer (full queue: the trace is dropped and
  counted, the request never waits);
- `retention`: deleting the days past the retention setting.
"""
