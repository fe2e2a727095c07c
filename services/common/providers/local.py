"""`local`: llama-cpp-python on a GGUF file, in this process.

`create_chat_completion` applies the chat template stored in the GGUF (SmolLM2's ChatML), so the
model sees exactly the format it was tuned on. One `Llama` per model path, shared by every
request of the process; llama.cpp is not thread-safe, so calls on one model take its lock and
run in a worker thread, leaving the event loop free.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import threading
from pathlib import Path
from typing import Any

from services.common import errors
from services.common.providers.base import Choice, Completion, CompletionRequest

_models: dict[tuple[str, int], tuple[Any, threading.Lock]] = {}
_models_lock = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Frees the models while the interpreter is whole (llama's __del__ at teardown raises)."""
    with _models_lock:
        for llama, _ in _models.values():
            llama.close()
        _models.clear()


def _load(path: str, n_ctx: int) -> tuple[Any, threading.Lock]:
    key = (path, n_ctx)
    with _models_lock:
        if key not in _models:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise errors.FailedPrecondition(
                    "the local provider needs llama-cpp-python (the `local` extra; `make setup`)"
                ) from exc
            llama = Llama(model_path=path, n_ctx=n_ctx, verbose=False, seed=random.getrandbits(31))
            _models[key] = (llama, threading.Lock())
        return _models[key]


class LocalProvider:
    name = "local"
    supports_n: bool | None = False

    def __init__(self, model_path: str | Path, *, n_ctx: int = 2048) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise errors.NotFound(f"local model: no GGUF file at {path}")
        self.model = str(path)
        self.base_url = ""
        self._n_ctx = n_ctx

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.n != 1:
            raise ValueError("the local provider returns one sample per call")
        return await asyncio.to_thread(self._complete, request)

    def _complete(self, request: CompletionRequest) -> Completion:
        llama, lock = _load(self.model, self._n_ctx)
        kwargs: dict[str, Any] = {
            "messages": [m.as_dict() for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            # A fresh seed per call unless asked: samples of one prompt must differ.
            "seed": request.seed if request.seed is not None else random.getrandbits(31),
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.json_object:
            kwargs["response_format"] = {"type": "json_object"}
        with lock:
            try:
                reply = llama.create_chat_completion(**kwargs)
            except ValueError as exc:  # e.g. the prompt does not fit the context window
                raise errors.InvalidArgument(f"local model {Path(self.model).name}: {exc}") from exc
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        return Completion(
            (Choice(choice["message"].get("content") or "", choice.get("finish_reason") or ""),),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            Path(self.model).name,
        )

    async def aclose(self) -> None:
        """The model stays loaded for the next request (loading it is the slow part)."""
