"""Teacher committees: several teachers answering every prompt, each with its own sample count
and price. A spec with one `teacher` (and `n_samples`) is the committee of one.

Each member's candidates are numbered one member after the other (member 0 writes sample indices
0..n0-1, member 1 n0..n0+n1-1, ...), so the judge ranks all of a prompt's candidates together
and a candidate's index says who wrote it; the teacher cache keys each member's own indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from distill.v1 import common_pb2
from services.common.errors import InvalidArgument
from services.common.models import PriceOverrides
from services.common.providers.spec import ModelConfig
from services.common.specs import generate
from services.common.specs.fields import join
from services.common.specs.members import Member

# All members' samples of one prompt together (the judge ranks them in one group).
MAX_COMMITTEE_SAMPLES = 32
MAX_MEMBERS = 8


def committee(members: Sequence[common_pb2.CommitteeMember], teacher: common_pb2.ModelSpec,
              n_samples: int, prefix: str, *, vary: bool | None = None,
              price_overrides: PriceOverrides | None = None,
              local_specs: Sequence[common_pb2.ModelSpec] | None = None) -> tuple[Member, ...]:
    """The checked committee of a request whose fields `teacher`, `n_samples` and `committee`
    sit under `prefix` ("spec", or "" for a GenerateRequest). `vary`: temperature 0 is refused
    (None: only for a member with more than one sample). `local_specs` replaces each member's
    ModelSpec (a local copy of a GGUF artifact), in order."""
    if not members:
        samples = generate.n_samples(n_samples, join(prefix, "n_samples"))
        spec = local_specs[0] if local_specs else teacher
        config = generate.teacher(spec, join(prefix, "teacher"),
                                  vary=samples > 1 if vary is None else vary,
                                  price_overrides=price_overrides)
        return (Member(label(config, [config]), config, samples, 0, join(prefix, "teacher")),)
    field = join(prefix, "committee")
    if teacher.ByteSize() or n_samples:
        which = "teacher" if teacher.ByteSize() else "n_samples"
        raise InvalidArgument(f"{join(prefix, which)}: must be unset when {field} is given "
                              "(each member names its teacher and n_samples)")
    if len(members) > MAX_MEMBERS:
        raise InvalidArgument(f"{field}: at most {MAX_MEMBERS} members, got {len(members)}")
    configs: list[tuple[ModelConfig, int]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, member in enumerate(members):
        where = f"{field}[{i}]"
        if member.n_samples < 1:
            raise InvalidArgument(f"{where}.n_samples: must be in [1, {generate.MAX_N_SAMPLES}]"
                                  f" (a member writes at least one sample), got "
                                  f"{member.n_samples}")
        samples = generate.n_samples(member.n_samples, f"{where}.n_samples")
        spec = local_specs[i] if local_specs else member.teacher
        config = generate.teacher(spec, f"{where}.teacher",
                                  vary=samples > 1 if vary is None else vary,
                                  price_overrides=price_overrides)
        identity = (config.provider, config.model, config.base_url)
        if identity in seen:
            raise InvalidArgument(f"{where}.teacher: {config.model!r} is listed twice (also "
                                  f"{field}[{seen[identity]}]); give it more n_samples instead")
        seen[identity] = i
        configs.append((config, samples))
    total = sum(samples for _, samples in configs)
    if total > MAX_COMMITTEE_SAMPLES:
        raise InvalidArgument(f"{field}: the members' n_samples add up to {total}; at most "
                              f"{MAX_COMMITTEE_SAMPLES} candidates per prompt")
    out, first = [], 0
    everyone = [c for c, _ in configs]
    for i, (config, samples) in enumerate(configs):
        out.append(Member(label(config, everyone), config, samples, first,
                          f"{field}[{i}].teacher"))
        first += samples
    return tuple(out)


def label(config: ModelConfig, everyone: Sequence[ModelConfig]) -> str:
    """The model's name (a local GGUF's file name), with its endpoint when another member uses
    the same model name."""
    name = Path(config.model).name if config.provider == "local" else config.model
    if sum(c.model == config.model for c in everyone) > 1:
        return f"{name} @ {config.base_url or config.provider}"
    return name


def lead_teacher(members: Sequence[common_pb2.CommitteeMember],
                 teacher: common_pb2.ModelSpec) -> common_pb2.ModelSpec:
    """The teacher that answers the held-out prompts and writes expanded prompts: the first
    member, or the spec's single teacher."""
    return members[0].teacher if members else teacher
