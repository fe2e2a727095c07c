"""Answers a `ChatCall` on the target its alias points at.

- a student: the engine serving its GGUF (services/router/engines.py), over OpenAI's HTTP API;
- an upstream: an external OpenAI-compatible server, the same way;
- a teacher: the provider clients (services/common/providers/: rate limits, retries, cost).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx

from distill.v1 import common_pb2, router_pb2
from services.common import errors
from services.common.providers import (
    CompletionRequest,
    Limits,
    ModelClient,
    ModelConfig,
    RateLimiter,
    RetryPolicy,
    authorize,
    open_provider,
    read_api_key,
    resolve_model_spec,
)
from services.common.providers.base import fatal_error
from services.common.providers.pinning import Pins, pinned_httpx_client
from services.router.chat import Answer, ChatCall, Delta, ServedBy
from services.router.engines import EngineSupervisor
from services.router.settings import RouterSettings
from services.router.student_files import StudentFiles
from services.router.targets import Target

# OpenAI's default when a request leaves temperature unset.
DEFAULT_TEMPERATURE = 1.0


@dataclass(frozen=True)
class _Endpoint:
    """An OpenAI-compatible server to forward to."""

    base_url: str
    model: str
    api_key: str
    # Whether it understands stream_options.include_usage (llama-cpp-python's server does not).
    stream_usage: bool
    # What to say when the connection breaks mid-answer.
    what: str
    # The client to call it with: the router's, or for an upstream's own base_url one that
    # dials only the addresses the endpoint policy checked (pinning.py).
    http: httpx.AsyncClient


class Answerer:
    def __init__(self, settings: RouterSettings, engines: EngineSupervisor,
                 files: StudentFiles, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._engines = engines
        self._files = files
        self._http = http
        self._teachers: dict[tuple[str, int], tuple[ModelClient, ModelConfig]] = {}
        self._upstreams: dict[tuple[str, int], _Endpoint] = {}

    async def warm(self, target: Target) -> None:
        """Gets a student's engine running before its alias version takes traffic."""
        if target.kind == router_pb2.TARGET_KIND_STUDENT:
            await self._engines.warm(target.gguf.sha256, await self._files.path(target.gguf))

    async def answer(self, target: Target, call: ChatCall) -> Answer:
        final = None
        parts = []
        async for delta in self.stream(target, call, whole=True):
            parts.append(delta.text)
            final = delta.final or final
        assert final is not None  # every stream ends with its totals
        final.content = "".join(parts)
        return final

    async def stream(self, target: Target, call: ChatCall, *,
                     whole: bool = False) -> AsyncIterator[Delta]:
        """Text deltas, then a last Delta whose `final` carries the totals (its content empty
        in a stream). `whole`: the caller wants one answer; engines are asked without SSE."""
        _check_limit(target, call)
        if call.max_tokens is None:  # the alias's limit bounds every answer, asked for or not
            default = target.max_tokens_limit
            if target.kind == router_pb2.TARGET_KIND_TEACHER:  # and the teacher spec's
                default = min(default, self._teacher_client(target)[1].max_tokens)
            call = replace(call, max_tokens=default)
        started = time.perf_counter()
        served = ServedBy(target.alias, target.version, target.kind, target.model)
        if target.kind == router_pb2.TARGET_KIND_TEACHER:
            answer = await self._teacher(target, call)
            yield Delta(answer.content)
        else:
            async with self._endpoint(target) as endpoint:
                if whole:
                    answer = await self._complete(endpoint, call)
                    yield Delta(answer.content)
                else:
                    answer = Answer("", "", 0, 0)
                    async for delta in self._stream(endpoint, call, answer):
                        yield delta
        answer.content = ""
        answer.latency_seconds = time.perf_counter() - started
        answer.served_by = served
        yield Delta(final=answer)

    # --- students and upstreams: OpenAI-compatible HTTP ---------------------------------------

    @asynccontextmanager
    async def _endpoint(self, target: Target) -> AsyncIterator[_Endpoint]:
        if target.kind == router_pb2.TARGET_KIND_UPSTREAM:
            yield self._upstream(target)
            return
        gguf = await self._files.path(target.gguf)
        async with self._engines.lease(target.gguf.sha256, gguf) as engine:
            try:
                yield _Endpoint(engine.base_url, "student", "",
                                self._settings.engine == "llama-server",
                                f"the engine serving {target.alias}@{target.version}", self._http)
            except _ConnectionLost:
                await self._engines.settle(engine)
                raise

    def _upstream(self, target: Target) -> _Endpoint:
        """The upstream's endpoint, authorized once per alias version (as a teacher is)."""
        key = (target.alias, target.version)
        if (endpoint := self._upstreams.get(key)) is None:
            up = target.record.upstream
            spec = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_OPENAI, model=up.model,
                                        base_url=up.base_url, api_key_env=up.api_key_env)
            field = "alias.target.upstream"
            config = authorize(
                resolve_model_spec(spec, field=field, default_temperature=DEFAULT_TEMPERATURE),
                self._settings.endpoint_policy(), field=field)
            key_value = read_api_key(config, field=field)
            http = self._http
            if config.pinned_addresses:
                http = pinned_httpx_client(Pins.of(config.base_url, config.pinned_addresses))
            endpoint = self._upstreams[key] = _Endpoint(
                config.base_url.rstrip("/"), config.model, key_value, True,
                f"upstream {config.base_url}", http)
        return endpoint

    def _body(self, endpoint: _Endpoint, call: ChatCall, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": endpoint.model,
                                "messages": [m.as_dict() for m in call.messages],
                                **call.sampling(), "stream": stream}
        if stream and endpoint.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    def _headers(self, endpoint: _Endpoint) -> dict[str, str]:
        return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}

    async def _complete(self, endpoint: _Endpoint, call: ChatCall) -> Answer:
        try:
            response = await endpoint.http.post(
                f"{endpoint.base_url}/chat/completions", json=self._body(endpoint, call, False),
                headers=self._headers(endpoint),
                timeout=self._settings.engine_request_timeout_seconds)
        except httpx.TransportError as exc:
            raise _broken(endpoint, exc) from None
        _raise_for_status(endpoint, response.status_code, response.text)
        try:
            data = response.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return Answer(choice["message"].get("content") or "",
                          choice.get("finish_reason") or "stop",
                          int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)))
        except (ValueError, KeyError, IndexError, TypeError):
            raise errors.Unavailable(f"{endpoint.what} sent a malformed answer") from None

    async def _stream(self, endpoint: _Endpoint, call: ChatCall,
                      totals: Answer) -> AsyncIterator[Delta]:
        chunks = 0
        try:
            async with endpoint.http.stream(
                    "POST", f"{endpoint.base_url}/chat/completions",
                    json=self._body(endpoint, call, True), headers=self._headers(endpoint),
                    timeout=self._settings.engine_request_timeout_seconds) as response:
                if response.status_code != 200:
                    _raise_for_status(endpoint, response.status_code,
                                      (await response.aread()).decode(errors="replace"))
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if usage := chunk.get("usage"):
                        totals.prompt_tokens = int(usage.get("prompt_tokens", 0))
                        totals.completion_tokens = int(usage.get("completion_tokens", 0))
                    for choice in chunk.get("choices") or ():
                        if choice.get("finish_reason"):
                            totals.finish_reason = choice["finish_reason"]
                        if text := (choice.get("delta") or {}).get("content"):
                            chunks += 1
                            yield Delta(text)
        except httpx.TransportError as exc:
            raise _broken(endpoint, exc) from None
        except ValueError:
            raise errors.Unavailable(f"{endpoint.what} sent a malformed stream") from None
        if not totals.completion_tokens:
            totals.completion_tokens = chunks  # llama.cpp servers send one token a chunk
        totals.finish_reason = totals.finish_reason or "stop"

    # --- teachers: the provider clients ------------------------------------------------------

    async def _teacher(self, target: Target, call: ChatCall) -> Answer:
        client, _ = self._teacher_client(target)
        request = CompletionRequest(
            call.messages,
            temperature=DEFAULT_TEMPERATURE if call.temperature is None else call.temperature,
            max_tokens=call.max_tokens,
            top_p=call.top_p, seed=call.seed)
        completion, _ = await client.complete(request)
        if not completion.choices:
            raise errors.Unavailable(f"teacher {target.model} answered with no choices")
        choice = completion.choices[0]
        text, finish = _cut_at_stop(choice.text, call.stop, choice.finish_reason)
        return Answer(text, finish, completion.input_tokens, completion.output_tokens,
                      cost_usd=client.price.cost_usd(completion.input_tokens,
                                                     completion.output_tokens))

    def _teacher_client(self, target: Target) -> tuple[ModelClient, ModelConfig]:
        key = (target.alias, target.version)
        if (held := self._teachers.get(key)) is None:
            field = "alias.target.teacher"
            config = resolve_model_spec(target.record.teacher, field=field,
                                        default_temperature=DEFAULT_TEMPERATURE)
            provider = open_provider(config, field=field,
                                     policy=self._settings.endpoint_policy())
            client = ModelClient(
                provider, price=config.price,
                limiter=RateLimiter(Limits(max_concurrency=self._settings.teacher_max_concurrency)),
                retry=RetryPolicy(max_retries=self._settings.teacher_max_retries),
                fatal_stops_all=False)
            held = self._teachers[key] = (client, config)
        return held

    async def aclose(self) -> None:
        for client, _ in self._teachers.values():
            await client.aclose()
        for endpoint in self._upstreams.values():
            if endpoint.http is not self._http:
                await endpoint.http.aclose()


def _check_limit(target: Target, call: ChatCall) -> None:
    if call.max_tokens is not None and call.max_tokens > target.max_tokens_limit:
        raise errors.InvalidArgument(
            f"max_tokens: {call.max_tokens} is over the limit of alias {target.alias!r} "
            f"({target.max_tokens_limit})")


def _cut_at_stop(text: str, stop: tuple[str, ...], finish: str) -> tuple[str, str]:
    """The provider interface takes no stop sequences: the answer is cut at the first one."""
    cuts = [i for s in stop if (i := text.find(s)) >= 0]
    return (text[:min(cuts)], "stop") if cuts else (text, finish)


class _ConnectionLost(errors.Unavailable):
    """The server stopped answering mid-request: for an engine, most likely a crash."""


def _broken(endpoint: _Endpoint, exc: Exception) -> errors.Unavailable:
    return _ConnectionLost(
        f"{endpoint.what} stopped answering mid-request ({type(exc).__name__}); "
        "retry: an engine that crashed is restarted by the next request")


def _raise_for_status(endpoint: _Endpoint, status: int, text: str) -> None:
    if status == 200:
        return
    if status >= 500 or status in (408, 429):
        raise errors.Unavailable(f"{endpoint.what} answered HTTP {status}: {text[:500]}")
    raise fatal_error(endpoint.what, status, text[:500])
