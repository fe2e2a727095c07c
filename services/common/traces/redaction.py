"""Redaction rules per alias, applied to a trace before it is written anywhere.

Built-in rule sets by name, plus the alias's own patterns. Every pattern runs in RE2
(`services/common/safe_regex.py`), so a rule cannot stall the writer either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.safe_regex import compile_field

BUILTIN: dict[str, tuple[str, ...]] = {
    # Key shapes that leak most often: OpenAI/Anthropic, AWS access keys, GitHub and Slack
    # tokens, bearer headers and PEM private keys.
    "secrets": (
        r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}",
        r"\bAKIA[0-9A-Z]{16}\b",
        r"\bgh[pousr]_[A-Za-z0-9]{30,}",
        r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
        r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    ),
    "emails": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",),
    # Runs of 4+ digits, with the separators phone and card numbers use between them.
    "numbers": (r"\+?\d(?:[ ().-]{0,2}\d){3,}",),
}
MAX_PATTERNS = 32


@dataclass(frozen=True)
class Redactor:
    rules: tuple[tuple[str, object], ...] = ()  # (label, compiled RE2 pattern)

    def __call__(self, text: str) -> str:
        for label, pattern in self.rules:
            text = pattern.sub(f"[{label}]", text)
        return text

    def __bool__(self) -> bool:
        return bool(self.rules)


def redactor(builtins: Sequence[str] = (), patterns: Sequence[str] = (),
             field: str = "redaction") -> Redactor:
    """The rules named in `builtins` (keys of BUILTIN) then the alias's own `patterns`; errors
    name the field and the index."""
    rules: list[tuple[str, object]] = []
    for i, name in enumerate(builtins):
        if name not in BUILTIN:
            raise InvalidArgument(f"{field}.builtins[{i}]: {name!r} is not one of "
                                  f"{', '.join(sorted(BUILTIN))}")
        rules += [(f"redacted:{name}", compile_field(p, f"{field}.builtins[{i}]"))
                  for p in BUILTIN[name]]
    if len(patterns) > MAX_PATTERNS:
        raise InvalidArgument(f"{field}.patterns: at most {MAX_PATTERNS}, got {len(patterns)}")
    rules += [("redacted", compile_field(p, f"{field}.patterns[{i}]"))
              for i, p in enumerate(patterns)]
    return Redactor(tuple(rules))
