"""The embedded demo: a sentiment-labelling task, the offline SmolLM2 as teacher and student.

Why this demonstrates something real. Asked bare, SmolLM2-135M answers "This review is
negative." (a reference judge in label mode takes that as wrong: the task wants the label
alone). With a few-shot system prompt, the teacher (the same model) answers with the bare label
and is right about one sample in four, and one of four samples is right for most prompts. The
judge keeps those; training on them, without the system prompt, teaches the student the task
and its format. The evaluation on held-out reviews shows the untrained and the trained student
side by side with the teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format
from rich.console import Console

from distill import chat
from distill.client import Distiller
from distill.v1 import common_pb2, gateway_pb2

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sentiment"
DEFAULT_DATASET = EXAMPLES / "train.jsonl"
HELD_OUT = EXAMPLES / "heldout.jsonl"
DEFAULT_STEPS = 40
ALIAS = "sentiment-demo"


def spec(client: Distiller, dataset: Path, steps: int) -> gateway_pb2.DistillSpec:
    teacher = common_pb2.ModelSpec(provider=common_pb2.PROVIDER_LOCAL, model="smollm2-135m-gguf",
                                   temperature=0.8, max_tokens=16)
    # The bundled task's prompt and held-out reviews; another dataset gets neither (its
    # held-out split is then the default fraction of it).
    bundled = dataset.resolve() == DEFAULT_DATASET
    system_prompt = (EXAMPLES / "system_prompt.txt").read_text(encoding="utf-8").strip() \
        if bundled else ""
    held_out = {"held_out": json_format.MessageToDict(client.upload(HELD_OUT))} if bundled \
        else {}
    judge = common_pb2.JudgeSpec(reference=common_pb2.ReferenceJudge(
        mode=common_pb2.MATCH_MODE_LABEL))
    return client.spec(
        dataset=client.upload(dataset), teacher=teacher, student="smollm2-135m", judge=judge,
        n_samples=4, top_k=2, min_score=5, system_prompt=system_prompt,
        display_name="demo: review sentiment", task_type="TASK_TYPE_CLASSIFICATION",
        training={"max_steps": steps, "batch_size": 4, "learning_rate": 3e-4,
                  "max_seq_length": 128, "checkpoint_interval": 20, "seed": 0},
        export={"quantizations": ["QUANTIZATION_TYPE_Q4_K_M"]},
        promote_alias=ALIAS,
        eval=held_out,
    )


def show_comparison(job: gateway_pb2.Job, out: Console) -> bool:
    """Before/after on the held-out questions: did training beat the untrained student?"""
    models = {m.model: m for m in job.evaluation.models}
    before, after = models["base"], models["student"]
    verdict = "beats" if after.mean_score > before.mean_score else "does NOT beat"
    out.print(f"before/after on {job.evaluation.prompts} held-out questions: the trained "
              f"student answers {after.pass_rate:.0%} right, the untrained one "
              f"{before.pass_rate:.0%} (teacher {models['teacher'].pass_rate:.0%}): training "
              f"{verdict} the untrained student.")
    return after.mean_score > before.mean_score


def show_answer(client: Distiller, router_url: str, out: Console) -> None:
    """Asks the alias a held-out review through the router's OpenAI endpoint, with the `openai`
    SDK: the call an application makes."""
    alias = client.get_alias(ALIAS)
    question = json.loads(HELD_OUT.read_text().splitlines()[0])
    answer = chat.ask(ALIAS, question["prompt"], router_url=router_url, max_tokens=16,
                      temperature=0).strip()
    out.print(f"alias [bold]{ALIAS}[/bold] v{alias.version} ({alias.target.job}), asked through "
              f"the router at {router_url}/v1 with the openai SDK")
    out.print(f"Q: {question['prompt']}\nA: {answer}   (expected {question['response']})")
