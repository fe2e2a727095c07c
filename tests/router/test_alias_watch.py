"""The router follows alias changes as the gateway pushes them (WatchAliases): with records kept
an hour, a moved alias is answered by its new version without waiting for the record to expire,
and a rollback is followed the same way."""

from __future__ import annotations

import openai

from tests.fixtures.router_stack import Stack
from tests.fixtures.waits import wait_for


def test_a_pushed_change_moves_the_alias_long_before_its_record_expires(stack: Stack):
    stack.set_teacher_alias("pushed")  # version 1
    router = stack.another_router(DISTILL_ROUTER_ALIAS_TTL_SECONDS="3600")
    try:
        url = f"http://127.0.0.1:{router.serving_event()['http_port']}/v1"
        client = openai.OpenAI(base_url=url, api_key=stack.token, max_retries=0)

        def version() -> int:
            reply = client.chat.completions.create(
                model="pushed", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
            return reply.model_extra["distill"]["version"]

        assert version() == 1  # the router now holds the record, for an hour
        stack.set_teacher_alias("pushed", expected_version=1)
        wait_for(lambda: version() == 2, what="the router to answer with version 2")
        stack.gateway.rollback_alias("pushed")  # version 3: version 1's target again
        wait_for(lambda: version() == 3, what="the router to follow the rollback")
    finally:
        assert router.stop() == 0, router.log()[-3000:]
