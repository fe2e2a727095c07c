"""The eval gate's absolute floor with a task the offline teacher cannot do, through the real CLI
against the whole suite: headlines filed under a newsroom's topic codes that the prompt never
gives (the user forgot the code book). No model can guess a code it was never shown, so the
teacher and its student both get 0 % right whatever they sample: the job says so and the alias
stays put. (Real topic words would leave the student at chance, 25 %, which reaches the 50 %
floor on 12 prompts now and then.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distill.v1 import gateway_pb2
from services.common.models import prepare_smollm2
from tests.fixtures.processes import REPO
from tests.fixtures.tiny_llama import shared_cache_dir

# Codes no model can produce unless it was shown them; the label judge compares the first token.
CODES = {"World": "nx-wld-7", "Sports": "nx-spt-3", "Business": "nx-bus-5",
         "Technology": "nx-tec-9"}
HEADLINES = {
    "World": ["Leaders meet in Geneva to discuss a ceasefire",
              "Floods force thousands from their homes in the delta",
              "Election results spark protests in the capital",
              "Embassy reopens after two years of closure",
              "Summit ends without a deal on border disputes",
              "Refugee numbers rise as the conflict spreads"],
    "Sports": ["Striker scores twice as the champions win again",
               "Tennis star withdraws from the final with an injury",
               "Marathon record falls on a cold morning in Berlin",
               "Coach sacked after a fifth straight defeat",
               "Underdogs reach the cup semi-final on penalties",
               "Sprinter banned for two years after a failed test"],
    "Business": ["Shares slide as the bank warns on profits",
                 "Retailer to close forty stores after weak sales",
                 "Central bank holds interest rates steady",
                 "Airline posts record quarterly revenue",
                 "Merger talks collapse over the price",
                 "Oil prices climb on supply worries"],
    "Technology": ["New chip promises twice the battery life",
                   "Startup unveils a cheaper electric scooter app",
                   "Software update fixes a security flaw in phones",
                   "Researchers build a faster quantum processor",
                   "Social network rolls out end-to-end encryption",
                   "Search engine adds an AI answer box"],
}
QUESTION = "Headline: \"{}\" Which topic code is this headline filed under? Answer with the code."


def _dataset(path):
    rows = [{"prompt": QUESTION.format(texts[i]), "response": CODES[label]}
            for i in range(6) for label, texts in HEADLINES.items()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _cli(suite, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distill.cli", "--gateway", suite.suite.address("gateway"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the offline teacher answers 12 x 4 + 12 prompts on the CPU
def test_a_teacher_that_cannot_do_the_task_is_named_and_its_student_not_promoted(suite,
                                                                                  tmp_path):
    student = prepare_smollm2(shared_cache_dir())
    spec = {
        "teacher": {"provider": "PROVIDER_LOCAL", "model": "smollm2-135m-gguf",
                    "temperature": 0.8, "max_tokens": 16},
        "student_model": str(student),
        "n_samples": 4,
        # No min_score: every candidate fails the reference, and the job still trains on the
        # teacher's best two (a min_score would drop every prompt before training).
        "judge": {"top_k": 2},
        "system_prompt": "You file news headlines under the newsroom's topic codes. Reply with "
                         "the code only.",
        "training": {"max_steps": 2, "batch_size": 2, "max_seq_length": 128,
                     "checkpoint_interval": 2, "seed": 0},
        "export": {"quantizations": ["QUANTIZATION_TYPE_Q8_0"], "smoke_max_tokens": 256},
        # Half of the 24 headlines held out, all with reference labels: the floor is on.
        "eval": {"holdout_fraction": 0.5, "seed": 1},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = _cli(suite, "run", "--spec", str(tmp_path / "spec.json"), "--dataset",
               str(_dataset(tmp_path / "headlines.jsonl")), "--judge", "reference",
               "--alias", "topics", timeout=1800)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{suite.logs()}"  # it succeeded

    (job,) = suite.client.list()
    e = job.evaluation
    teacher = next(m for m in e.models if m.model == "teacher")
    trained = next(m for m in e.models if m.model == "student")
    assert e.min_pass_rate == 0.5 and teacher.pass_rate == 0 and trained.pass_rate == 0, e
    assert not e.promoted and job.promoted_alias_version == 0
    assert e.promotion_reason.startswith("below the eval gate")
    assert f"the student gets {trained.pass_rate * 100:.0f} % right (50 % required)" in \
        e.promotion_reason
    expected = (f"the teacher gets {teacher.pass_rate * 100:.0f} % of these right — a student "
                "cannot learn the task from it")
    assert len(job.warnings) == 1 and job.warnings[0].startswith(expected)
    # Said plainly in the CLI, in the report and in the job's log; the alias did not move.
    printed = " ".join(run.stdout.split())  # rich wraps long lines
    assert f"warning: {expected}" in printed and "below the eval gate" in printed
    page = suite.client.download_report(job.name, tmp_path / "report")
    assert json.loads((page.parent / "report.json").read_text())["job"]["warnings"] == list(
        job.warnings)
    assert expected in page.read_text()
    logs = _cli(suite, "logs", job.name)
    assert any(" warning " in line and expected in line for line in logs.stdout.splitlines())
    alias = _cli(suite, "alias", "get", "topics")
    assert alias.returncode == 2 and "NOT_FOUND" in alias.stderr
    metrics = json.loads(_cli(suite, "metrics", job.name, "--json").stdout)
    assert metrics["evaluation"]["minPassRate"] == 0.5
    assert job.state == gateway_pb2.JOB_STATE_SUCCEEDED
