"""Traces, datasets from traces and alias pages are per project: another project sees nothing
of them (NOT_FOUND or an empty list, never another project's numbers)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from distill.client import DistillClientError
from services.common.storage import open_store
from services.common.traces.recorder import TraceRecorder
from services.common.traces.records import ServedBy, Trace


def record(projects, project: str, alias: str, texts: list[str]) -> None:
    recorder = TraceRecorder(open_store(projects.settings.store_url))
    for text in texts:
        recorder.record(Trace(project=project, served_by=ServedBy(alias, 1, "teacher", "m"),
                              messages=(("user", text),), answer="a", created_at=time.time()))
    asyncio.run(recorder.flush())


def test_another_projects_traces_and_alias_page_are_out_of_reach(projects, tmp_path):
    projects.alpha.set_alias("bot", teacher="gpt-4o-mini")
    projects.beta.set_alias("bot", teacher="gpt-4o-mini")  # the same name in another project
    record(projects, "alpha", "bot", ["alpha's secret question"])
    record(projects, "beta", "bot", ["beta one", "beta two"])

    assert len(projects.alpha.trace_days("bot")) == 1
    alpha_set = projects.alpha.dataset_from_traces("bot")
    rows = list(projects.alpha.read_jsonl(alpha_set.dataset.uri))
    assert [r["messages"][-1]["content"] for r in rows] == ["alpha's secret question"]
    beta_set = projects.beta.dataset_from_traces("bot")
    assert beta_set.prompts == 2 and beta_set.traces_scanned == 2  # never alpha's line
    # Each project's page counts its own traffic only.
    projects.alpha.download_alias_report("bot", tmp_path / "alpha")
    projects.beta.download_alias_report("bot", tmp_path / "beta")
    assert '"requests": 1,' in (tmp_path / "alpha" / "report.json").read_text()
    assert '"requests": 2,' in (tmp_path / "beta" / "report.json").read_text()
    # alpha's dataset and alpha's page's files are NOT_FOUND for beta.
    store = open_store(projects.settings.store_url)
    (alpha_page,) = [k for k in store.list("aliases/alpha/bot/report/") if k.endswith(".json")]
    for uri in (alpha_set.dataset.uri, store.uri(alpha_page)):
        with pytest.raises(DistillClientError) as raised:
            list(projects.beta.read_jsonl(uri))
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
