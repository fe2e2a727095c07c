"""The spec layer: each request's defaults applied once, each field's bound refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from distill.v1 import common_pb2, exporter_pb2, gateway_pb2, generator_pb2, judge_pb2, trainer_pb2
from services.common.errors import InvalidArgument
from services.common.specs import distill, export, generate, judge, layout, names, train

REF = common_pb2.ArtifactRef(uri="file:///store/x.jsonl")
TEACHER = common_pb2.ModelSpec(model="gpt-4o-mini")
REFERENCE = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge())


def refused(fn, *args, match: str) -> str:
    with pytest.raises(InvalidArgument) as raised:
        fn(*args)
    assert match in str(raised.value), str(raised.value)
    return str(raised.value)


# --- names and keys ---------------------------------------------------------------------------

def test_one_job_id_rule_for_every_stage():
    assert names.job_id("a1.b_c-d") == "a1.b_c-d"
    fresh = names.job_id("", optional=True)
    assert names.JOB_ID.fullmatch(fresh) and fresh != names.job_id("", optional=True)
    for bad in ("../etc", "-lead", "a/b", "x" * 129):
        refused(names.job_id, bad, match="job_id: ")
    refused(names.job_id, "", match="job_id: required")
    # the same rule, whichever stage's request carries the id
    refused(generate.generate_spec, generator_pb2.GenerateRequest(job_id="a/b", teacher=TEACHER),
            match="job_id: 'a/b' must be 1-128")
    refused(judge.judge_spec, judge_pb2.JudgeConfig(job_id="a/b", judge=REFERENCE),
            match="config.job_id: 'a/b' must be 1-128")


def test_job_names_and_the_key_layout():
    assert names.job_id_of(names.job_name("abc")) == "abc"
    refused(names.job_id_of, "abc", match="name: expected 'jobs/{id}'")
    keys = layout.JobKeys("abc")
    every = [keys.candidates, keys.curated, keys.split("train"), keys.evaluation, keys.adapter,
             keys.checkpoint(7), keys.merged, keys.gguf, keys.modelfile, keys.export_manifest,
             keys.report]
    assert all(key.startswith("jobs/abc/") for key in every)
    assert len(set(every)) == len(every)
    assert keys.checkpoint(7).startswith(keys.checkpoints)


def test_alias_names():
    assert names.alias_name("support-bot") == "support-bot"
    refused(names.alias_name, "Support_Bot", "spec.promote_alias", match="spec.promote_alias: ")


# --- generate ---------------------------------------------------------------------------------

def test_generate_defaults():
    spec = generate.generate_spec(generator_pb2.GenerateRequest(teacher=TEACHER))
    assert spec.n_samples == 4 and spec.teacher.temperature == 0.8
    assert (spec.limits.max_concurrency, spec.limits.max_retries) == (16, 6)
    assert names.JOB_ID.fullmatch(spec.job_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n_samples = 5  # type: ignore[misc]


@pytest.mark.parametrize(("fields", "message"), [
    ({"n_samples": 17}, "n_samples: must be in [1, 16]"),
    ({"n_samples": -1}, "n_samples: must be in [1, 16]"),
    ({"teacher": common_pb2.ModelSpec(model="gpt-4o-mini", temperature=0.0)},
     "teacher.temperature: must be > 0"),
    ({"limits": common_pb2.RateLimits(max_concurrency=0)},
     "limits.max_concurrency: must be in [1, 256]"),
    ({"limits": common_pb2.RateLimits(max_retries=21)}, "limits.max_retries: must be in [0, 20]"),
    ({"limits": common_pb2.RateLimits(requests_per_minute=-1)},
     "limits.requests_per_minute: must be >= 0"),
])
def test_generate_bounds_name_the_field(fields, message):
    request = generator_pb2.GenerateRequest(**{"teacher": TEACHER, **fields})
    refused(generate.generate_spec, request, match=message)


def test_one_sample_may_be_greedy():
    greedy = common_pb2.ModelSpec(model="gpt-4o-mini", temperature=0.0)
    spec = generate.generate_spec(generator_pb2.GenerateRequest(teacher=greedy, n_samples=1))
    assert spec.teacher.temperature == 0.0


# --- judge ------------------------------------------------------------------------------------

def test_judge_defaults():
    spec = judge.judge_spec(judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(
        llm=common_pb2.LlmJudge())))
    assert (spec.top_k, spec.min_score, spec.min_margin) == (2, None, 1.0)
    (llm,) = judge.llm_judges(spec.judge)
    assert llm.model.model == "gpt-4o-mini" and llm.model.temperature == 0.0
    assert llm.criteria == judge.DEFAULT_CRITERIA and llm.max_parse_retries == 2
    assert llm.field == "config.judge.llm.model"


@pytest.mark.parametrize(("fields", "message"), [
    ({"top_k": 17}, "config.top_k: must be in [1, 16]"),
    ({"min_score": 10.5}, "config.min_score: must be in [0, 10]"),
    ({"min_margin": -1}, "config.min_margin: must be in [0, 10]"),
    ({"judge": common_pb2.JudgeSpec()}, "config.judge: set one of"),
    ({"judge": common_pb2.JudgeSpec(llm=common_pb2.LlmJudge(max_parse_retries=6))},
     "config.judge.llm.max_parse_retries: must be in [0, 5]"),
    ({"judge": common_pb2.JudgeSpec(length=common_pb2.LengthJudge(min_chars=5, max_chars=2))},
     "config.judge.length: need 0 <= min_chars <= max_chars"),
])
def test_judge_bounds_name_the_field(fields, message):
    refused(judge.judge_spec, judge_pb2.JudgeConfig(**{"judge": REFERENCE, **fields}),
            match=message)


# --- train ------------------------------------------------------------------------------------

def test_train_settings_defaults_without_a_job():
    settings = train.train_settings(common_pb2.LoraSettings(), common_pb2.BondSettings(),
                                    common_pb2.TrainingSettings(), "spec")
    assert (settings.lora.r, settings.bond.beta, settings.batch_size) == (16, 0.5, 4)
    assert settings.total_steps(10) == 3


@pytest.mark.parametrize(("fields", "message"), [
    ({"lora": common_pb2.LoraSettings(r=0)}, "spec.lora.r: must be in [1, 1024]"),
    ({"bond": common_pb2.BondSettings(bond_beta=1.5)}, "spec.bond.bond_beta: must be in [0, 1]"),
    ({"training": common_pb2.TrainingSettings(batch_size=0)},
     "spec.training.batch_size: must be in [1, 4096]"),
    ({"training": common_pb2.TrainingSettings(learning_rate=0)},
     "spec.training.learning_rate: must be in (0, 1]"),
])
def test_train_bounds_name_the_field_where_they_sit(fields, message):
    parts = {"lora": common_pb2.LoraSettings(), "bond": common_pb2.BondSettings(),
             "training": common_pb2.TrainingSettings(), **fields}
    refused(train.train_settings, parts["lora"], parts["bond"], parts["training"], "spec",
            match=message)


def test_train_request_is_the_settings_plus_the_job():
    config = train.train_config(trainer_pb2.TrainRequest(job_id="j1", curated=REF,
                                                         student_model=" smollm2-135m "))
    assert (config.job_id, config.student_model, config.batch_size) == ("j1", "smollm2-135m", 4)
    refused(train.train_config, trainer_pb2.TrainRequest(curated=REF, student_model="s"),
            match="job_id: required")


# --- export -----------------------------------------------------------------------------------

def test_export_defaults():
    job = export.export_job(exporter_pb2.ExportRequest(job_id="j1", adapter=REF, base_model="m"))
    assert job.quantizations == ("q4_k_m", "q8_0") and job.merged_model and job.ollama_modelfile
    assert job.smoke_max_tokens == 64 and job.smoke_messages == export.DEFAULT_SMOKE_MESSAGES


@pytest.mark.parametrize(("settings", "message"), [
    (common_pb2.ExportSettings(quantizations=[99]), "settings.quantizations: 99 is not"),
    (common_pb2.ExportSettings(smoke_max_tokens=0), "settings.smoke_max_tokens: must be in"),
    (common_pb2.ExportSettings(smoke_max_tokens=4097), "[1, 4096]"),
])
def test_export_bounds_name_the_field(settings, message):
    refused(export.export_job, exporter_pb2.ExportRequest(job_id="j1", adapter=REF,
                                                          base_model="m", settings=settings),
            match=message)


# --- the whole DistillSpec --------------------------------------------------------------------

def _spec(**fields) -> gateway_pb2.DistillSpec:
    base = {"dataset": REF, "teacher": TEACHER, "student_model": "smollm2-135m"}
    spec = gateway_pb2.DistillSpec(**{**base, **fields})
    if not spec.judge.HasField("judge"):
        spec.judge.judge.CopyFrom(REFERENCE)
    return spec


def test_distill_defaults_are_the_stages_defaults():
    plan = distill.distill_plan(_spec())
    assert plan.n_samples == 4 and plan.teacher.temperature == 0.8
    assert plan.judge.top_k == 2 and plan.train.lora.r == 16
    assert plan.export.quantizations == ("q4_k_m", "q8_0")
    assert plan.eval.holdout_fraction == 0.1 and plan.eval.promote_min_ratio == 0.95
    assert plan.eval.enabled and plan.budget_usd is None and plan.promote_alias == ""


@pytest.mark.parametrize(("fields", "message"), [
    ({"dataset": None}, "spec.dataset: required"),
    ({"n_samples": 17}, "spec.n_samples: must be in [1, 16]"),
    ({"teacher": common_pb2.ModelSpec(model="gpt-4o-mini", temperature=0.0)},
     "spec.teacher.temperature: must be > 0"),
    ({"teacher": common_pb2.ModelSpec(model="gpt-4o-mini", max_tokens=0)},
     "spec.teacher.max_tokens"),
    ({"limits": common_pb2.RateLimits(max_retries=99)}, "spec.limits.max_retries"),
    ({"judge": judge_pb2.JudgeConfig(judge=REFERENCE, top_k=99)}, "spec.judge.top_k"),
    ({"judge": judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(
        regex=common_pb2.RegexJudge(pattern="(")))}, "spec.judge.judge.regex.pattern"),
    ({"student_model": " "}, "spec.student_model: required"),
    ({"training": common_pb2.TrainingSettings(max_seq_length=4)},
     "spec.training.max_seq_length: must be in [8, "),
    ({"export": common_pb2.ExportSettings(quantizations=[42])}, "spec.export.quantizations"),
    ({"eval": gateway_pb2.EvalSettings(holdout_fraction=0.6)},
     "spec.eval.holdout_fraction: must be in [0, 0.5]"),
    ({"eval": gateway_pb2.EvalSettings(promote_min_ratio=float("nan"))},
     "spec.eval.promote_min_ratio"),
    ({"eval": gateway_pb2.EvalSettings(promote_min_pass_rate=1.5)},
     "spec.eval.promote_min_pass_rate: must be in [0, 1]"),
    ({"budget_usd": 0}, "spec.budget_usd: must be > 0"),
    ({"promote_alias": "Bad Alias"}, "spec.promote_alias: aliases are"),
])
def test_distill_bounds_name_the_field(fields, message):
    spec = _spec(**{k: v for k, v in fields.items() if v is not None})
    for name, value in fields.items():
        if value is None:
            spec.ClearField(name)
    refused(distill.distill_plan, spec, match=message)


def _llm(**fields) -> judge_pb2.JudgeConfig:
    return judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(llm=common_pb2.LlmJudge(**fields)))


@pytest.mark.parametrize(("fields", "message"), [
    ({"display_name": "d" * 257}, "spec.display_name: 257 bytes, over the 256-byte limit"),
    ({"system_prompt": "é" * (128 * 1024 + 1)},  # two bytes a character: bytes count
     "spec.system_prompt: 262146 bytes, over the 262144-byte limit"),
    ({"dataset": common_pb2.ArtifactRef(uri="file:///" + "u" * 3000)}, "spec.dataset.uri: "),
    ({"teacher": common_pb2.ModelSpec(model="m" * 2000)}, "spec.teacher.model: 2000 bytes"),
    ({"teacher": common_pb2.ModelSpec(model="gpt-4o-mini", base_url="http://" + "h" * 3000)},
     "spec.teacher.base_url: "),
    ({"teacher": common_pb2.ModelSpec(model="gpt-4o-mini", api_key_env="K" * 300)},
     "spec.teacher.api_key_env: 300 bytes, over the 256-byte limit"),
    ({"student_model": "s" * 1025}, "spec.student_model: 1025 bytes, over the 1024-byte limit"),
    ({"lora": common_pb2.LoraSettings(target_modules=["q_proj"] * 65)},
     "spec.lora.target_modules: 65 items, over the limit of 64"),
    ({"lora": common_pb2.LoraSettings(target_modules=["q" * 300])},
     "spec.lora.target_modules[0]: 300 bytes"),
    ({"judge": judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(
        regex=common_pb2.RegexJudge(pattern="a" * 5000)))},
     "spec.judge.judge.regex.pattern: 5000 bytes, over the 4096-byte limit"),
    ({"judge": judge_pb2.JudgeConfig(judge=common_pb2.JudgeSpec(
        json_schema=common_pb2.JsonSchemaJudge(schema_json=" " * 300_000)))},
     "spec.judge.judge.json_schema.schema_json: 300000 bytes"),
    ({"judge": _llm(rubric_text="r" * 70_000)}, "spec.judge.judge.llm.rubric_text: 70000 bytes"),
    ({"judge": _llm(criteria=[common_pb2.Criterion(name="c", description="d" * 70_000,
                                                   weight=1)])},
     "spec.judge.judge.llm.criteria[0].description: 70000 bytes"),
    ({"judge": _llm(model=common_pb2.ModelSpec(model="gpt-4o-mini", base_url="b" * 3000))},
     "spec.judge.judge.llm.model.base_url: 3000 bytes"),
    ({"eval": gateway_pb2.EvalSettings(held_out=common_pb2.ArtifactRef(uri="u" * 3000))},
     "spec.eval.held_out.uri: 3000 bytes"),
])
def test_every_free_text_field_has_a_size_limit(fields, message):
    refused(distill.distill_plan, _spec(**fields), match=message)


def test_stage_requests_have_the_same_text_limits():
    request = generator_pb2.GenerateRequest(teacher=TEACHER, system_prompt="x" * 300_000)
    refused(generate.generate_spec, request, match="system_prompt: 300000 bytes, over the")
    refused(names.job_id_of, "jobs/" + "x" * 10_000, match="name: 'xxxx")
