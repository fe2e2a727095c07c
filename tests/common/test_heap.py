"""Long-running processes freeze what startup made (`freeze_startup_objects`), so that the
collector's full passes stop walking it. Checked in fresh interpreters: freezing a pytest
process would keep the test session's objects."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.fixtures.processes import REPO


def run_python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_startup_objects_leave_the_collected_generations_and_new_ones_do_not():
    seen = run_python("""
        import gc, json
        import grpc
        from services.common.heap import freeze_startup_objects
        before = gc.get_freeze_count()
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
        tracked = len(gc.get_objects())
        later = [[i] for i in range(1000)]  # made after startup: collected as usual
        print(json.dumps({"before": before, "frozen": frozen, "tracked": tracked,
                          "later": len(gc.get_objects()) - tracked,
                          "still_frozen": gc.get_freeze_count()}))
    """)
    assert seen["before"] == 0
    assert seen["frozen"] > 10_000  # the interpreter's own objects and the grpc import
    assert seen["tracked"] < 100
    assert seen["later"] >= 1000 and seen["still_frozen"] == seen["frozen"]


def test_a_call_process_freezes_once_its_first_provider_has_its_sdk_loaded():
    seen = run_python("""
        import asyncio, gc, json
        from distill.v1 import common_pb2
        from services.common.providers import resolve_model_spec
        from services.common.providers.call_worker import _Worker

        async def main():
            spec = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI,
                                        model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
            config = resolve_model_spec(spec, field="teacher", default_temperature=0.8)
            worker = _Worker(writer=None)
            counts = [gc.get_freeze_count()]
            worker.handle(("open", 0, config, "sk-unused", "auto"))
            counts.append(gc.get_freeze_count())
            worker.handle(("open", 1, config, "sk-unused", "auto"))
            counts.append(gc.get_freeze_count())
            await worker.close()
            return counts

        print(json.dumps({"counts": asyncio.run(main())}))
    """)
    before, first, second = seen["counts"]
    assert before == 0
    assert first > 50_000  # the interpreter, asyncio and the openai SDK
    assert second == first  # later providers (later jobs) are not frozen
