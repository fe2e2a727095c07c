"""The offline teacher: SmolLM2 GGUF through llama.cpp, in process (`local`) and behind the real
llama.cpp OpenAI-compatible server (`python -m llama_cpp.server`) through the `openai` provider."""

from __future__ import annotations

import re
import subprocess
import sys

import grpc
import pytest

from distill.local_suite import stop_process
from distill.v1 import common_pb2, generator_pb2
from services.common.models import packaged_smollm2_gguf
from services.common.providers import CompletionRequest, Message
from services.common.providers.local import LocalProvider, _load
from tests.fixtures.waits import wait_for

llama_cpp = pytest.importorskip("llama_cpp", reason="the `local` extra (make setup) installs it")

QUESTION = "What is the capital of France?"


def rendered_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Tokens of the conversation rendered with the GGUF's own chat template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama, _ = _load(str(packaged_smollm2_gguf()), 2048)
    formatter = Jinja2ChatFormatter(
        llama.metadata["tokenizer.chat_template"], eos_token="<|im_end|>",
        bos_token="<|im_start|>", add_generation_prompt=True)
    prompt = formatter(messages=messages).prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    return len(llama.tokenize(prompt.encode(), add_bos=False, special=True))


async def test_local_provider_applies_the_gguf_chat_template_and_samples():
    provider = LocalProvider(packaged_smollm2_gguf())
    messages = (Message("system", "Answer in one word."), Message("user", QUESTION))
    completions = [await provider.complete(CompletionRequest(messages, temperature=1.0,
                                                             max_tokens=8))
                   for _ in range(3)]
    expected = rendered_prompt_tokens([m.as_dict() for m in messages])
    for completion in completions:
        (choice,) = completion.choices
        assert choice.text.strip() and choice.finish_reason in ("stop", "length")
        # the model saw the ChatML conversation, not the bare question (~8 tokens)
        assert completion.input_tokens == expected > 15
        assert 0 < completion.output_tokens <= 8
    # A fresh seed per sample. Asked on an open prompt: three samples of "the capital of France
    # in one word" may all be "Paris" by chance, and then the test would say nothing about seeds.
    story = (Message("user", "Tell me a story about a dog."),)
    stories = [await provider.complete(CompletionRequest(story, temperature=1.0, max_tokens=8))
               for _ in range(3)]
    assert len({c.choices[0].text for c in stories}) > 1
    # with no system turn the template adds SmolLM's own default one
    bare = await provider.complete(CompletionRequest((Message("user", QUESTION),),
                                                     max_tokens=2))
    assert bare.input_tokens == rendered_prompt_tokens([{"role": "user", "content": QUESTION}])


async def test_generate_with_the_local_teacher(generator, tmp_path):
    prompts = generator_pb2.InlinePrompts(prompts=[
        common_pb2.Prompt(id=f"q{i}", messages=[common_pb2.ChatMessage(
            role=common_pb2.ROLE_USER, content=text)])
        for i, text in enumerate(["Name a colour.", "Name a fruit."])])
    request = generator_pb2.GenerateRequest(
        prompts=prompts, n_samples=2, system_prompt="Answer in one word.",
        teacher=common_pb2.ModelSpec(provider=common_pb2.PROVIDER_LOCAL, max_tokens=8))
    events = [e async for e in generator.stub.Generate(request, timeout=120)]
    summary = events[-1].summary
    assert summary.candidate_count == 4 and summary.usage.requests == 4
    assert summary.usage.input_tokens > 4 * 15 and summary.usage.output_tokens > 0
    assert summary.usage.cost_usd == 0  # self-hosted
    groups = [e.group for e in events if e.WhichOneof("event") == "group"]
    assert all(c.text.strip() for g in groups for c in g.candidates)
    again = [e async for e in generator.stub.Generate(request, timeout=120)]
    assert again[-1].summary.usage.cached_requests == 4


async def test_local_model_from_a_gguf_artifact(generator_factory, tmp_path):
    """An exported student named by its artifact URI runs locally from a copy named by sha256;
    the cached candidate keeps the original call's latency; a missing artifact is NOT_FOUND."""
    generator = await generator_factory(cache_dir=tmp_path / "cache")
    ref = generator.store.put_file("jobs/j1/gguf/q4_k_m.gguf", packaged_smollm2_gguf())
    prompts = generator_pb2.InlinePrompts(prompts=[common_pb2.Prompt(
        id="q0", messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=QUESTION)])])
    request = generator_pb2.GenerateRequest(
        prompts=prompts, n_samples=1, teacher=common_pb2.ModelSpec(
            provider=common_pb2.PROVIDER_LOCAL, model=ref.uri, temperature=0, max_tokens=4))
    first = [e async for e in generator.stub.Generate(request, timeout=120)]
    (candidate,) = next(e.group for e in first if e.WhichOneof("event") == "group").candidates
    assert candidate.text.strip() and not candidate.cached and candidate.latency_seconds > 0
    assert (tmp_path / "cache" / "gguf" / f"{ref.sha256}.gguf").is_file()
    again = [e async for e in generator.stub.Generate(request, timeout=120)]
    (cached,) = next(e.group for e in again if e.WhichOneof("event") == "group").candidates
    assert cached.cached and cached.text == candidate.text
    assert cached.latency_seconds == pytest.approx(candidate.latency_seconds)
    request.teacher.model = ref.uri.replace("q4_k_m", "missing")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        [e async for e in generator.stub.Generate(request, timeout=30)]
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "teacher.model" in raised.value.details()

@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        # port 0: the server binds a port the kernel picks and logs it once it serves
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_smollm2_gguf()),
             "--host", "127.0.0.1", "--port", "0", "--n_ctx", "2048"],
            stdout=out, stderr=subprocess.STDOUT)
    running = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")

    def serving() -> re.Match | None:
        assert proc.poll() is None, f"llama_cpp.server exited:\n{log.read_text()[-2000:]}"
        return running.search(log.read_text(errors="replace"))

    try:
        wait_for(serving, lambda: f"llama_cpp.server serving\n{log.read_text()[-2000:]}")
        yield serving().group(1)
    finally:
        stop_process(proc, 10)


@pytest.mark.slow
async def test_generate_against_the_real_llama_cpp_server(generator_factory, llama_server):
    # A spec's own base_url: its host on the allow-list, loopback allowed, called with no key.
    generator = await generator_factory(allowed_base_url_hosts=["127.0.0.1"],
                                        allow_loopback_addresses=True)
    prompts = generator_pb2.InlinePrompts(prompts=[
        common_pb2.Prompt(id="q0", messages=[common_pb2.ChatMessage(
            role=common_pb2.ROLE_USER, content=QUESTION)])])
    request = generator_pb2.GenerateRequest(
        prompts=prompts, n_samples=3,
        teacher=common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model="smollm2",
                                     base_url=f"{llama_server}/v1", max_tokens=12))
    events = [e async for e in generator.stub.Generate(request, timeout=120)]
    (group,) = [e.group for e in events if e.WhichOneof("event") == "group"]
    assert [c.sample_index for c in group.candidates] == [0, 1, 2]
    assert all(c.text.strip() and c.finish_reason in ("stop", "length")
               for c in group.candidates)
    summary = events[-1].summary
    # the server applies the chat template too: the same prompt token count as in process
    assert summary.usage.input_tokens >= rendered_prompt_tokens(
        [{"role": "user", "content": QUESTION}])
    assert summary.usage.output_tokens > 0
    # llama.cpp's server answers one choice whatever `n` says: 1 probe + 2 single calls, or one
    # call if a later version honours n
    assert summary.usage.requests in (1, 3)
