"""Smoke test of a GGUF: it loads in llama-cpp-python, answers a prompt through its own chat
template, stops at end-of-turn within the token limit, and says something.

The model runs in a child process (`python -m services.exporter.smoke REQUEST.json`), so a native
crash or a hang is a failed smoke test with a reason, not a dead service. Greedy decoding makes
the verdict reproducible. Besides the answer, the child checks what most often breaks exports
silently: that llama.cpp tokenises the formatted prompt exactly as the Hugging Face tokenizer
the model was trained with does, and that the GGUF's chat template renders the same prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from services.exporter.gguf import ToolFailed, _child_env, run_tool

_RESULT_PREFIX = "SMOKE-RESULT "


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    prompt: str
    answer: str = ""
    tokens: int = 0
    stopped_at_eos: bool = False
    failure: str = ""


@dataclass(frozen=True)
class SmokeRequest:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    # The prompt as the Hugging Face chat template renders it, and its token ids.
    expected_prompt: str
    expected_ids: list[int]
    end_of_turn: str
    lora: str | None = None
    n_ctx: int = 2048
    threads: int = 0


def expected_prompt(tokenizer, messages: Sequence[dict[str, str]]) -> tuple[str, list[int]]:
    """The prompt text and ids the model saw in training (Hugging Face tokenizer)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=True)
    return text, list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_text(messages: Sequence[dict[str, str]]) -> str:
    """The last user message: what the SmokeTest reports as its prompt."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else ""


async def smoke_test(request: SmokeRequest, *, timeout: float) -> SmokeResult:
    """Run the smoke test in a child process; a crash or timeout is a failed result."""
    prompt = prompt_text(request.messages)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(asdict(request), f)
        request_path = f.name
    try:
        stdout = await run_tool(
            [sys.executable, "-m", "services.exporter.smoke", request_path],
            what=f"the smoke test of {Path(request.model).name}", timeout=timeout,
            env=_child_env(),
        )
    except ToolFailed as exc:
        return SmokeResult(False, prompt, failure=str(exc))
    finally:
        os.unlink(request_path)
    for line in reversed(stdout.splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return SmokeResult(**json.loads(line[len(_RESULT_PREFIX) :]))
    return SmokeResult(False, prompt, failure="the smoke test printed no result")


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def run_in_process(request: SmokeRequest) -> SmokeResult:
    """The child's side: load, check prompt and tokens, generate greedily, judge."""
    from llama_cpp import Llama

    prompt = prompt_text(request.messages)

    def fail(reason: str, **fields) -> SmokeResult:
        return SmokeResult(False, prompt, failure=reason, **fields)

    try:
        llm = Llama(
            model_path=request.model, lora_path=request.lora, n_ctx=request.n_ctx,
            n_threads=request.threads or None, seed=0, verbose=False,
            chat_format="chat_template.default",  # the GGUF's own template, never a guess
        )
    except (ValueError, RuntimeError, OSError) as exc:
        return fail(f"llama-cpp-python could not load the GGUF: {exc}")
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return fail("the GGUF carries no chat template (tokenizer.chat_template)")
    handler = llm._chat_handlers.get("chat_template.default")
    if handler is None:
        return fail("llama-cpp-python found no chat handler for the GGUF's chat template")
    # The GGUF's template, rendered by llama-cpp-python, must give the training-time prompt.
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    formatted = Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
    )(messages=request.messages).prompt
    if formatted != request.expected_prompt:
        return fail(f"the GGUF's chat template formats the prompt as {formatted!r}, the model "
                    f"was trained on {request.expected_prompt!r}")
    ids = llm.tokenize(request.expected_prompt.encode("utf-8"), add_bos=False, special=True)
    if list(ids) != list(request.expected_ids):
        i = _first_difference(ids, request.expected_ids)
        return fail(
            f"llama.cpp tokenises the prompt differently from the Hugging Face tokenizer "
            f"({len(ids)} vs {len(request.expected_ids)} tokens, first difference at token {i}: "
            f"{list(ids[i:i + 5])} vs {list(request.expected_ids[i:i + 5])})"
        )
    reply = llm.create_chat_completion(
        messages=request.messages, max_tokens=request.max_tokens, temperature=0.0, seed=0,
    )
    choice = reply["choices"][0]
    answer = choice["message"].get("content") or ""
    tokens = int(reply["usage"]["completion_tokens"])
    stopped = choice.get("finish_reason") == "stop"  # an end-of-generation token, not the limit
    fields = {"answer": answer, "tokens": tokens, "stopped_at_eos": stopped}
    if not stopped:
        return fail(
            f"generation did not stop at end-of-turn ({request.end_of_turn}) within "
            f"{request.max_tokens} tokens (finish reason {choice.get('finish_reason')!r})",
            **fields,
        )
    if not answer.strip():
        return fail("the answer is empty: the model ended its turn at once", **fields)
    return SmokeResult(True, prompt, **fields)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.exporter.smoke")
    parser.add_argument("request", type=Path, help="JSON file holding a SmokeRequest")
    args = parser.parse_args(argv)
    request = SmokeRequest(**json.loads(args.request.read_text(encoding="utf-8")))
    result = run_in_process(request)
    print(_RESULT_PREFIX + json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
