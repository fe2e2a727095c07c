"""The Ollama Modelfile: FROM the GGUF, the chat template in Go template syntax, stop tokens.

The Go template is generated from the measured `ChatFormat` (not translated from Jinja text), in
the shape Ollama's own templates use: a `range` over `.Messages` with one branch per role, then
the generation prompt. The default system message becomes `SYSTEM` (Ollama inserts it when a
request has none). `parse` reads a Modelfile back and `render_go_template` executes the subset of
Go's text/template the generator writes, so a Modelfile is checked before it is delivered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.errors import FailedPrecondition
from services.exporter.chat_format import ROLES, ChatFormat, Message

# Near-greedy sampling suits a student distilled for one narrow task.
DEFAULT_PARAMETERS: dict[str, float] = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1}
MAX_NUM_CTX = 4096


def _go_text(text: str) -> str:
    """Literal text for a Go template: `{{` must not open an action, so it is emitted as one."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(fmt: ChatFormat, bos_token: str | None = None) -> str:
    """The Ollama TEMPLATE for `fmt`. A header equal to the BOS token is left to the runtime,
    which adds BOS itself (GGUF `tokenizer.ggml.add_bos_token`)."""
    header = "" if bos_token and fmt.header == bos_token else fmt.header
    branches = []
    for i, role in enumerate(ROLES):
        keyword = "if" if i == 0 else "else if"
        branches.append(
            f'{{{{ {keyword} eq .Role "{role}" }}}}{_go_text(fmt.prefix[role])}'
            f"{{{{ .Content }}}}{_go_text(fmt.suffix[role])}"
        )
    return (
        f"{_go_text(header)}{{{{ range .Messages }}}}{''.join(branches)}{{{{ end }}}}{{{{ end }}}}"
        f"{_go_text(fmt.generation_prompt)}"
    )


def stop_tokens(fmt: ChatFormat, eos_tokens: Sequence[str] = ()) -> list[str]:
    """End-of-turn, the model's EOS tokens, and a special token opening a new turn."""
    stops = [fmt.end_of_turn, *eos_tokens]
    opener = re.match(r"<\|?[A-Za-z_]+\|?>", fmt.prefix["user"])
    if opener:
        stops.append(opener.group(0))
    return [s for s in dict.fromkeys(stops) if s]


def _quote(text: str) -> str:
    """A Modelfile string: triple-quoted when it spans lines, else a JSON-style quoted string."""
    if '"""' in text:
        raise FailedPrecondition(f'cannot write {text[:40]!r}... into a Modelfile (holds """)')
    if "\n" in text or '"' in text or text != text.strip():
        return f'"""{text}"""'
    return json.dumps(text, ensure_ascii=False)


def build(
    fmt: ChatFormat,
    gguf_path: str,
    *,
    context_length: int,
    eos_tokens: Sequence[str] = (),
    bos_token: str | None = None,
) -> str:
    """The Modelfile text; `gguf_path` is relative to the Modelfile (e.g. ./gguf/q4_k_m.gguf)."""
    lines = [
        "# Ollama Modelfile written by distill: `ollama create NAME -f Modelfile` in the folder",
        "# holding this file and gguf/.",
        f"FROM {gguf_path}",
        f"TEMPLATE {_quote(go_template(fmt, bos_token))}",
    ]
    if fmt.default_system:
        lines.append(f"SYSTEM {_quote(fmt.default_system)}")
    for stop in stop_tokens(fmt, eos_tokens):
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    lines.append(f"PARAMETER num_ctx {min(context_length, MAX_NUM_CTX)}")
    for name, value in DEFAULT_PARAMETERS.items():
        lines.append(f"PARAMETER {name} {value:g}")
    text = "\n".join(lines) + "\n"
    parsed = parse(text)
    _check(parsed, fmt)
    return text


# ---------------------------------------------------------------------------------------------
# Reading a Modelfile back (the directives Ollama's parser accepts)

DIRECTIVES = ("FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "LICENSE", "MESSAGE")
# Parameters Ollama knows, with the type its parser converts the value to.
PARAMETER_TYPES: dict[str, type] = {
    "num_ctx": int, "num_predict": int, "num_keep": int, "repeat_last_n": int, "seed": int,
    "top_k": int, "temperature": float, "top_p": float, "min_p": float, "repeat_penalty": float,
    "presence_penalty": float, "frequency_penalty": float, "stop": str,
}


@dataclass
class Modelfile:
    from_: str = ""
    template: str | None = None
    system: str | None = None
    parameters: dict[str, list[str | int | float]] = field(default_factory=dict)


class ModelfileError(ValueError):
    pass


_WORD = re.compile(r"(\w+)[ \t]+")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def _value(text: str, pos: int, directive: str) -> tuple[str, int]:
    """The value starting at `pos`: triple-quoted, "quoted", or the rest of the line."""
    if text.startswith('"""', pos):
        end = text.find('"""', pos + 3)
        if end < 0:
            raise ModelfileError(f'{directive}: unterminated """')
        return text[pos + 3 : end], end + 3
    if text.startswith('"', pos):
        m = _QUOTED.match(text, pos)
        if m is None:
            raise ModelfileError(f"{directive}: unterminated quoted string")
        return json.loads(f'"{m.group(1)}"'), m.end()
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    return text[pos:end].strip(), end


def parse(text: str) -> Modelfile:
    """Parse Modelfile text; ModelfileError on an unknown directive, bad quoting or a bad value."""
    result = Modelfile()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        eol = text.find("\n", pos)
        eol = len(text) if eol < 0 else eol
        if text[pos] == "#":
            pos = eol
            continue
        m = _WORD.match(text, pos)
        if m is None:
            raise ModelfileError(f"expected a directive and a value: {text[pos:eol]!r}")
        directive = m.group(1).upper()
        if directive not in DIRECTIVES:
            raise ModelfileError(f"unknown directive {directive!r}")
        pos = m.end()
        name = ""
        if directive == "PARAMETER":
            m = _WORD.match(text, pos)
            if m is None:
                raise ModelfileError(f"PARAMETER needs a name and a value: {text[pos:eol]!r}")
            name, pos = m.group(1), m.end()
        value, pos = _value(text, pos, directive)
        eol = text.find("\n", pos)
        eol = len(text) if eol < 0 else eol
        if text[pos:eol].strip():
            raise ModelfileError(f"{directive}: unexpected text after the value: {text[pos:eol]!r}")
        pos = eol
        if directive == "FROM":
            result.from_ = value
        elif directive == "TEMPLATE":
            result.template = value
        elif directive == "SYSTEM":
            result.system = value
        elif directive == "PARAMETER":
            if name not in PARAMETER_TYPES:
                raise ModelfileError(f"unknown PARAMETER {name!r}")
            try:
                converted = PARAMETER_TYPES[name](value)
            except ValueError:
                raise ModelfileError(f"PARAMETER {name} {value!r} is not a number") from None
            result.parameters.setdefault(name, []).append(converted)
    if not result.from_:
        raise ModelfileError("no FROM directive")
    return result


# ---------------------------------------------------------------------------------------------
# Executing the Go template subset the generator writes

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _parse_template(template: str) -> list:
    """A tree: strings, ("content",), ("range", body), ("if", [(role|None, body), ...])."""
    tokens: list = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        if tokens and isinstance(tokens[-1], tuple) and tokens[-1][0] == "trim_right":
            tokens.pop()
            text = text.lstrip()
        tokens.append(text)
        tokens.append(("action", m.group(2)))
        if m.group(3):
            tokens.append(("trim_right",))
        pos = m.end()
    tail = template[pos:]
    if tokens and isinstance(tokens[-1], tuple) and tokens[-1][0] == "trim_right":
        tokens.pop()
        tail = tail.lstrip()
    tokens.append(tail)

    def block(i: int, closers: tuple[str, ...]) -> tuple[list, int, str]:
        body: list = []
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if isinstance(tok, str):
                if tok:
                    body.append(tok)
                continue
            action = tok[1]
            if any(action == c or action.startswith(c + " ") for c in closers):
                return body, i, action
            if action == ".Content":
                body.append(("content",))
            elif re.fullmatch(r'"((?:[^"\\]|\\.)*)"', action):
                body.append(json.loads(action))
            elif action == "range .Messages":
                inner, i, closer = block(i, ("end",))
                body.append(("range", inner))
            elif (m := re.fullmatch(r'if eq \.Role "(\w+)"', action)):
                branches = []
                role: str | None = m.group(1)
                while True:
                    inner, i, closer = block(i, ("else if", "else", "end"))
                    branches.append((role, inner))
                    if closer == "end":
                        break
                    m2 = re.fullmatch(r'else if eq \.Role "(\w+)"', closer)
                    if closer == "else":
                        role = None
                    elif m2:
                        role = m2.group(1)
                    else:
                        raise ModelfileError(f"unsupported template action {{{{ {closer} }}}}")
                body.append(("if", branches))
            else:
                raise ModelfileError(f"unsupported template action {{{{ {action} }}}}")
        if closers:
            raise ModelfileError(f"template ends inside a block (missing {{{{ {closers[-1]} }}}})")
        return body, i, ""

    tree, _, _ = block(0, ())
    return tree


def render_go_template(template: str, messages: Sequence[Message]) -> str:
    """Execute `template` (the generated subset of Go text/template) for Ollama's `.Messages`."""
    tree = _parse_template(template)

    def run(nodes: list, message: Message | None) -> str:
        out = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif node[0] == "content":
                if message is None:
                    raise ModelfileError(".Content outside range .Messages")
                out.append(message["content"])
            elif node[0] == "range":
                out.extend(run(node[1], m) for m in messages)
            elif node[0] == "if":
                if message is None:
                    raise ModelfileError(".Role outside range .Messages")
                for role, body in node[1]:
                    if role is None or role == message["role"]:
                        out.append(run(body, message))
                        break
        return "".join(out)

    return run(tree, None)


def _check(parsed: Modelfile, fmt: ChatFormat) -> None:
    """The generated template must write what the model's own chat template writes."""
    assert parsed.template is not None
    samples = [
        [{"role": "user", "content": "Hello {{ .System }}"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": "3+3?"}],
    ]
    for messages in samples:
        # Ollama puts SYSTEM first when a request carries no system message.
        with_system = list(messages)
        if parsed.system and messages[0]["role"] != "system":
            with_system.insert(0, {"role": "system", "content": parsed.system})
        got = render_go_template(parsed.template, with_system)
        expected = fmt.render(messages)
        if fmt.header and not got.startswith(fmt.header):
            got = fmt.header + got  # the runtime's BOS
        if got != expected:
            raise FailedPrecondition(
                f"the generated Ollama template writes {got!r} where the model's chat template "
                f"writes {expected!r}"
            )
