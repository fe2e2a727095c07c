"""What a model's chat template writes around each turn, found by rendering it.

A Jinja chat template cannot be translated to another template language in general, but what it
writes around each message can be measured: render conversations of sentinel strings and cut the
output at the sentinels. The result (a `ChatFormat`) drives the Ollama template, the stop tokens
and the end-of-turn check of the merged model's generation config; `ChatFormat.render` re-creates
the template's output so the measurement is verified against the template itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jinja2 import TemplateError

from services.common.errors import FailedPrecondition

Message = dict[str, str]
# Renders a conversation the way `tokenizer.apply_chat_template(..., tokenize=False)` does.
Renderer = Callable[[Sequence[Message], bool], str]

_S, _U, _A, _U2, _A2 = (f"\u2063SENTINEL{i}\u2063" for i in range(5))
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatFormat:
    """The text a template writes before and after each role's content."""

    header: str  # once, at the very start (e.g. a BOS written by the template)
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str  # what add_generation_prompt appends
    default_system: str | None  # written when the conversation has no system message
    end_of_turn: str  # the special token closing an assistant turn

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """The template's output for `messages`, rebuilt from the measured pieces."""
        out = [self.header]
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            out += [self.prefix["system"], self.default_system, self.suffix["system"]]
        for m in messages:
            out += [self.prefix[m["role"]], m["content"], self.suffix[m["role"]]]
        if add_generation_prompt:
            out.append(self.generation_prompt)
        return "".join(out)


def _cut(text: str, sentinels: Sequence[str]) -> list[str]:
    """`text` split at each sentinel in order: len(sentinels) + 1 pieces."""
    pieces = []
    for s in sentinels:
        if text.count(s) != 1:
            raise ValueError(f"the template wrote a message {text.count(s)} times, not once")
        before, text = text.split(s)
        pieces.append(before)
    pieces.append(text)
    return pieces


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise ValueError(f"{what}: {text!r} does not start with {prefix!r}")
    return text[len(prefix) :]


def _strip_suffix(text: str, suffix: str, what: str) -> str:
    if suffix and not text.endswith(suffix):
        raise ValueError(f"{what}: {text!r} does not end with {suffix!r}")
    return text[: len(text) - len(suffix)]


def analyse(render: Renderer, special_tokens: Sequence[str], model: str = "model") -> ChatFormat:
    """Measure a chat template; FailedPrecondition when it does not fit the turn-based shape.

    `special_tokens` are the tokenizer's added special tokens: the first one an assistant
    suffix writes is the end-of-turn token.
    """
    def msg(role: str, content: str) -> Message:
        return {"role": role, "content": content}

    try:
        # [S, U, A, U2]: assistant suffix + user prefix between A and U2, user suffix at the end.
        full = _cut(render([msg("system", _S), msg("user", _U), msg("assistant", _A),
                            msg("user", _U2)], False), [_S, _U, _A, _U2])
        head_sys, sys_user, user_asst, asst_user, user_end = full
        suffix = {"user": user_end}
        # [S, U, A, U2, A2]: the assistant suffix alone at the end.
        suffix["assistant"] = _cut(render([msg("system", _S), msg("user", _U),
                                           msg("assistant", _A), msg("user", _U2),
                                           msg("assistant", _A2)], False),
                                   [_S, _U, _A, _U2, _A2])[-1]
        prefix = {
            "assistant": _strip_prefix(user_asst, suffix["user"], "user→assistant"),
            "user": _strip_prefix(asst_user, suffix["assistant"], "assistant→user"),
        }
        suffix["system"] = _strip_suffix(sys_user, prefix["user"], "system→user")
        # [U]: header (+ default system turn) + user prefix.
        before_u, after_u = _cut(render([msg("user", _U)], False), [_U])
        if after_u != suffix["user"]:
            raise ValueError(f"a lone user turn ends {after_u!r}, not {suffix['user']!r}")
        lead = _strip_suffix(before_u, prefix["user"], "start→user")
        generation = _strip_prefix(render([msg("user", _U)], True),
                                   render([msg("user", _U)], False), "generation prompt")
        # head_sys = header + system prefix. The lone-user lead is either the header alone, or
        # header + system prefix + default system message + system suffix (then the header
        # always comes with the system prefix and is folded into it).
        default_system = None
        if (lead != head_sys and lead.startswith(head_sys) and lead.endswith(suffix["system"])
                and len(lead) >= len(head_sys) + len(suffix["system"])):
            header = ""
            default_system = lead[len(head_sys) : len(lead) - len(suffix["system"])]
        else:
            header = lead
        prefix["system"] = _strip_prefix(head_sys, header, "start→system")
    except (ValueError, TemplateError) as exc:  # TemplateError: the template's own refusal
        raise FailedPrecondition(
            f"the chat template of {model} does not have the turn-by-turn shape the exporter "
            f"can translate ({exc})"
        ) from exc

    fmt = ChatFormat(header, prefix, suffix, generation, default_system,
                     _end_of_turn(suffix["assistant"], special_tokens, model))
    _verify(fmt, render, model)
    return fmt


def _end_of_turn(assistant_suffix: str, special_tokens: Sequence[str], model: str) -> str:
    hits = [(assistant_suffix.find(t), -len(t), t) for t in special_tokens
            if t and t in assistant_suffix]
    if not hits:
        raise FailedPrecondition(
            f"the chat template of {model} ends an assistant turn with {assistant_suffix!r}, "
            "which holds no special token: generation could never stop at end-of-turn"
        )
    return min(hits)[2]


def _verify(fmt: ChatFormat, render: Renderer, model: str) -> None:
    """The measured pieces must rebuild the template's own output on a real conversation."""
    samples = [
        [{"role": "user", "content": "Hi there"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}],
        [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"},
         {"role": "user", "content": "Three"}],
    ]
    for messages in samples:
        for gen in (True, False):
            try:
                expected = render(messages, gen)
            except TemplateError as exc:
                raise FailedPrecondition(
                    f"the chat template of {model} refuses a plain conversation: {exc}"
                ) from exc
            if fmt.render(messages, gen) != expected:
                raise FailedPrecondition(
                    f"the chat template of {model} writes turns differently depending on the "
                    f"conversation (e.g. {expected!r}); it cannot be translated"
                )


def tokenizer_renderer(tokenizer) -> Renderer:
    """A Renderer over a Hugging Face tokenizer's own chat template."""
    def render(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    return render


def analyse_tokenizer(tokenizer, model: str = "model") -> ChatFormat:
    if not getattr(tokenizer, "chat_template", None):
        raise FailedPrecondition(
            f"{model} has no chat template: the exporter needs one to format prompts, stop at "
            "end-of-turn and write the Ollama template"
        )
    specials = [*tokenizer.all_special_tokens,
                *(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)]
    return analyse(tokenizer_renderer(tokenizer), list(dict.fromkeys(specials)), model)
