"""Token counting for estimates: the teacher's own tokenizer where one is available offline.

OpenAI models: tiktoken when its encoding files are present (they download on first use), else
bpe-openai, which bundles the same encodings (o200k_base, cl100k_base) — identical counts, and
it works on machines that cannot reach OpenAI's blob storage. Other teachers (Claude's tokenizer
is not public, local models): about 4 characters per token, stated as an assumption.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

CHARS_PER_TOKEN = 4.0
Counter = Callable[[str], int]


@functools.cache
def _openai_encoding(model: str) -> tuple[Counter, str] | None:
    try:
        import tiktoken

        encoding = tiktoken.encoding_for_model(model)
        return (lambda text: len(encoding.encode(text, disallowed_special=()))), \
            f"tiktoken {encoding.name}"
    except Exception:  # noqa: BLE001 - unknown model or encoding files not downloadable here
        pass
    try:
        import bpe_openai

        encoding = bpe_openai.encoding_for_model(model)
        return (lambda text: len(encoding.encode(text, disallowed_special=()))), \
            f"{encoding.name} (bpe-openai, same encoding as tiktoken)"
    except Exception:  # noqa: BLE001 - not an OpenAI model name either library knows
        return None


def counter_for(provider: str, model: str) -> tuple[Counter, str]:
    """A token counter and a line saying how it counts."""
    if provider == "openai":
        found = _openai_encoding(model)
        if found is not None:
            return found
    return (lambda text: math.ceil(len(text) / CHARS_PER_TOKEN)), \
        f"about {CHARS_PER_TOKEN:g} characters per token (no public tokenizer for {model})"
