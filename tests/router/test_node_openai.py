"""The official `openai` npm package against the router (examples/node/openai_chat.js), with a
project's API key: /v1/models, a chat completion plain and streamed, and the router's refusals
as the package's errors. Needs `node` (>= 18; see tests/e2e/test_node_client.py)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.test_node_client import NODE_DIR, node  # noqa: F401 - the Node.js fixture
from tests.fixtures.router_stack import teacher_target
from tests.router.conftest import Projects

SCRIPT = NODE_DIR / "openai_chat.js"


@pytest.fixture(scope="module")
def aliases(projects: Projects) -> Projects:
    with projects.client("alpha") as alpha, projects.client("beta") as beta:
        alpha.set_alias("alpha-bot", target=teacher_target(projects.fake))
        beta.set_alias("beta-bot", target=teacher_target(projects.fake))
    return projects


def ask(node_path: str, stack: Projects, key: str, model: str) -> tuple[int, dict]:
    """The script's exit status and the JSON object it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTILL_", "OPENAI_"))}
    env["DISTILL_API_KEY"] = key
    result = subprocess.run(
        [node_path, str(SCRIPT), "--base-url", stack.http_url, "--model", model,
         "--max-tokens", "16", "Say hello"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip(), f"exit {result.returncode}, no output:\n{result.stderr}"
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_models_chat_and_stream_with_a_projects_key(node, aliases):  # noqa: F811 - fixture
    code, out = ask(node, aliases, aliases.keys["alpha"], "alpha-bot")
    assert code == 0, out
    assert out["models"] == [{"id": "alpha-bot", "owned_by": "alpha"}]
    answer, streamed = out["answer"], out["streamed"]
    assert answer["content"] and answer["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] >= 1
    assert answer["distill"]["alias"] == "alpha-bot" and answer["distill"]["kind"] == "teacher"
    # Streamed: the role chunk, at least one content chunk, the last one with finish_reason.
    assert streamed["chunks"] >= 3 and streamed["content"]
    assert streamed["finish_reason"] in ("stop", "length")


def test_the_routers_refusals_reach_the_package_as_its_errors(node, aliases):  # noqa: F811
    code, out = ask(node, aliases, aliases.keys["alpha"], "beta-bot")  # another project's
    assert code == 1
    assert out["error"]["status"] == 404 and out["error"]["code"] == "model_not_found"
    code, out = ask(node, aliases, "dk_not-a-key", "alpha-bot")
    assert code == 1
    assert out["error"]["status"] == 401 and out["error"]["code"] == "invalid_api_key"
