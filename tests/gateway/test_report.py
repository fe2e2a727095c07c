"""The job report: page, plots and numbers from a synthetic job; missing parts; escaping; the
page rendered by headless Chromium; `distill report` over real gRPC."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from distill import cli
from distill.v1 import common_pb2, gateway_pb2
from services.common.storage import FOLDER_MEDIA_TYPE, LocalStore
from services.gateway.job_store import JobStore
from services.gateway.report import TRAINING_LOG, build_report, write_report
from services.gateway.server import build
from services.gateway.settings import GatewaySettings
from tests.fixtures.inprocess import serve_in_thread

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"
STEPS = 30
EVIL = "<script>alert('x')</script>"


# -- a synthetic job and its artifacts ------------------------------------------------------------

def log_rows(steps: int = STEPS) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        sft, pref, kl = 2.0 / step + 0.1, 0.693 - 0.01 * step, 0.001 * step
        rows.append({"step": step, "loss": 0.5 * sft + 0.5 * pref + 0.1 * kl, "sft_loss": sft,
                     "preference_loss": pref, "kl_loss": kl, "learning_rate": 1e-4,
                     "tokens_per_second": 1000.0 + step, "epoch": step / 10, "tokens": 512,
                     "seconds": 0.5})
    return rows


def curated_rows() -> list[dict]:
    rows = []
    for i in range(6):
        rows.append({
            "prompt": {"id": f"line-{i + 1}", "messages": [{"role": "ROLE_USER",
                                                            "content": f"What is {i} + 1?"}]},
            "chosen": [{"sample_index": 0, "text": str(i + 1), "score": 10.0},
                       {"sample_index": 1, "text": f"{i + 1}.", "score": 9.5}],
            "rejected": [{"sample_index": 2, "text": "no idea", "score": float(i % 3)},
                         {"sample_index": 3, "text": "", "score": 4.2}],
            "pairs": [[0, 0], [0, 1]],
        })
    return rows


EVAL_SCORES = {"student": [10.0, 10.0, 0.0, 10.0], "base": [0.0, 10.0, 0.0, 0.0],
               "teacher": [10.0, 10.0, 10.0, 0.0]}


def evaluation_rows(prompt: str = "What is 7 + 1?") -> list[dict]:
    rows = []
    for i in range(4):
        rows.append({"prompt_id": f"held-{i}", "prompt": prompt if i == 0 else f"What is {i}?",
                     "reference": str(i), "answers": {
                         model: {"text": f"{model} answer {i}", "score": scores[i],
                                 "passed": scores[i] == 10.0, "latency_seconds": 0.1}
                         for model, scores in EVAL_SCORES.items()}})
    return rows


def put_jsonl(store: LocalStore, key: str, rows: list) -> common_pb2.ArtifactRef:
    body = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    return store.put_bytes(key, body.encode(), media_type="application/jsonl").as_proto()


def put_adapter(store: LocalStore, tmp: Path, job_id: str, log: list[dict] | None
                ) -> common_pb2.ArtifactRef:
    folder = tmp / f"adapter-{job_id}"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    if log is not None:
        (folder / TRAINING_LOG).write_text("".join(json.dumps(r) + "\n" for r in log))
    return store.put_dir(f"jobs/{job_id}/adapter/", folder).as_proto()


def make_job(store: LocalStore, tmp: Path, *, job_id: str = "j1", display_name: str = "addition",
             prompt: str = "What is 7 + 1?", evaluation: bool = True, with_log: bool = True,
             log: list[dict] | None = None) -> gateway_pb2.Job:
    job = gateway_pb2.Job(name=f"jobs/{job_id}", state=gateway_pb2.JOB_STATE_SUCCEEDED)
    job.spec.display_name = display_name
    job.spec.teacher.model = "gpt-4o-mini"
    job.spec.student_model = "smollm2-135m"
    job.spec.judge.judge.reference.mode = common_pb2.MATCH_MODE_LABEL
    job.spec.promote_alias = "adder"
    job.teacher_usage.CopyFrom(common_pb2.Usage(requests=24, cached_requests=4,
                                                 input_tokens=1200, output_tokens=300,
                                                 cost_usd=0.125))
    job.judge_usage.CopyFrom(common_pb2.Usage(requests=24, cost_usd=0.03125))
    job.cost_usd = 0.15625
    job.judge_statistics.score_histogram.extend([8, 2, 2, 0, 6, 0, 0, 0, 0, 6, 6])
    job.judge_statistics.prompts_total = 6
    job.judge_statistics.prompts_kept = 6
    job.judge_statistics.candidates_scored = 24
    job.judge_statistics.preference_pairs = 12
    job.outputs.curated.CopyFrom(put_jsonl(store, f"jobs/{job_id}/curated.jsonl",
                                           curated_rows()))
    job.outputs.adapter.CopyFrom(put_adapter(
        store, tmp, job_id, None if not with_log else log_rows() if log is None else log))
    if evaluation:
        ev = job.evaluation
        ev.prompts = 4
        for model, latency, per_1k in (("teacher", 0.8, 0.5), ("student", 0.05, 0.01),
                                       ("base", 0.05, 0.01)):
            scores = EVAL_SCORES[model]
            ev.models.add(model=model, mean_score=sum(scores) / 4,
                          pass_rate=sum(s == 10.0 for s in scores) / 4,
                          latency_seconds_mean=latency, cost_per_1k_requests_usd=per_1k)
        ev.student_wins, ev.student_ties, ev.student_losses = 1, 2, 1
        ev.student_win_rate = 0.5
        ev.promoted = True
        ev.promotion_reason = "student reached 100% of the teacher's score (needed 95%)"
        job.outputs.evaluation.CopyFrom(put_jsonl(store, f"jobs/{job_id}/evaluation.jsonl",
                                                  evaluation_rows(prompt)))
    else:
        job.spec.eval.holdout_fraction = 0.0
    return job


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def fetch(store: LocalStore, ref: common_pb2.ArtifactRef, dest: Path) -> Path:
    store.get_dir(store.key_from_uri(ref.uri), dest, expected_sha256=ref.sha256)
    return dest


def assert_drawn_png(path: Path) -> None:
    """A valid PNG of a plausible size with a drawing on it (not a blank canvas)."""
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path.name
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300, (path.name, width, height)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        inked = sum(image.convert("L").histogram()[:200])  # pixels darker than light grey
    assert inked > 0.01 * width * height, (path.name, inked)


# -- the report -----------------------------------------------------------------------------------

def test_report_has_a_page_every_plot_and_the_numbers(store, tmp_path):
    job = make_job(store, tmp_path)
    ref = build_report(job, store)
    assert ref.media_type == FOLDER_MEDIA_TYPE and ref.uri.endswith("jobs/j1/report/")
    folder = fetch(store, ref, tmp_path / "report")

    data = json.loads((folder / "report.json").read_text())
    assert set(data["plots"]) == {"training", "candidates", "evaluation", "evaluation_scores",
                                  "cost"}
    assert sorted(p.name for p in folder.iterdir()) == data["files"]
    page = (folder / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    for name in data["plots"].values():
        assert_drawn_png(folder / name)
        assert f'<img src="{name}"' in page
    assert "not available" not in page

    # training: every logged step, as written
    training = data["training"]
    assert training["source"] == "adapter"
    assert [r["step"] for r in training["steps"]] == list(range(1, STEPS + 1))
    for got, want in zip(training["steps"], log_rows(), strict=True):
        for name in ("loss", "sft_loss", "preference_loss", "kl_loss", "learning_rate"):
            assert got[name] == pytest.approx(want[name])
    assert training["summary"]["final_loss"] == pytest.approx(log_rows()[-1]["loss"])
    assert training["summary"]["train_seconds"] == pytest.approx(0.5 * STEPS)
    assert training["summary"]["tokens"] == 512 * STEPS

    # candidates: chosen 10 and 9.5 for each of 6 prompts; rejected 0,1,2,0,1,2 and 4.2 x 6
    candidates = data["candidates"]
    assert candidates["prompts"] == 6
    assert candidates["chosen"]["histogram"] == [0] * 9 + [6, 6]
    assert candidates["rejected"]["histogram"] == [2, 2, 2, 0, 6, 0, 0, 0, 0, 0, 0]
    assert candidates["chosen"]["mean"] == pytest.approx(9.75)
    assert candidates["rejected"]["mean"] == pytest.approx((6 + 6 * 4.2) / 12)
    assert candidates["judge_statistics"]["score_histogram"] == list(
        job.judge_statistics.score_histogram)

    # evaluation: the job's figures in student, base, teacher order, and the per-prompt rows
    evaluation = data["evaluation"]
    assert [m["model"] for m in evaluation["models"]] == ["student", "base", "teacher"]
    by_model = {m["model"]: m for m in evaluation["models"]}
    for model, scores in EVAL_SCORES.items():
        assert by_model[model]["mean_score"] == pytest.approx(sum(scores) / 4)
        assert by_model[model]["pass_rate"] == pytest.approx(sum(s == 10 for s in scores) / 4)
        assert evaluation["per_prompt"]["histograms"][model] == [
            scores.count(0.0), *[0] * 9, scores.count(10.0)]
    assert (evaluation["student_wins"], evaluation["student_ties"],
            evaluation["student_losses"]) == (1, 2, 1)
    assert evaluation["student_gain_over_base"] == pytest.approx(7.5 - 2.5)
    assert evaluation["student_to_teacher_ratio"] == pytest.approx(1.0)
    assert evaluation["promoted"] and "95%" in evaluation["promotion_reason"]
    assert len(evaluation["examples"]) == 4

    # cost: teacher and judge as accrued (the paid teacher's held-out calls included), the
    # self-hosted models' machine time from their per-1k costs, training unpriced
    lines = {line["item"]: line for line in data["cost"]["lines"]}
    assert lines["teacher (generation and held-out answers)"]["usd"] == 0.125
    assert lines["judge"]["usd"] == 0.03125
    assert lines["evaluation (self-hosted models)"]["usd"] == pytest.approx(
        4 * (0.01 + 0.01) / 1000)
    assert lines["training"]["usd"] is None and "15.0 s" in lines["training"]["detail"]
    assert data["cost"]["accrued_usd"] == 0.15625
    for shown in ("0.1250", "0.0312", "7.500", "2.500", "student (trained)", "50.0%"):
        assert shown in page


def test_a_rebuilt_report_replaces_the_old_one(store, tmp_path):
    job = make_job(store, tmp_path)
    first = build_report(job, store)
    job.ClearField("evaluation")
    second = build_report(job, store)
    assert second.uri == first.uri and second.sha256 != first.sha256
    keys = [k.rsplit("/", 1)[1] for k in store.list("jobs/j1/report/")]
    assert "evaluation.png" not in keys and "loss.png" in keys


def test_missing_evaluation_and_training_log_are_notes_not_errors(store, tmp_path):
    job = make_job(store, tmp_path, evaluation=False, with_log=False)  # an older trainer's
    folder = fetch(store, build_report(job, store), tmp_path / "report")
    data = json.loads((folder / "report.json").read_text())
    assert set(data["plots"]) == {"candidates", "cost"}
    page = (folder / "index.html").read_text()
    assert "not available: evaluation was turned off (eval.holdout_fraction = 0)" in page
    assert f"not available: the adapter folder has no {TRAINING_LOG}" in page
    assert data["evaluation"] == {"available": False,
                                  "note": "evaluation was turned off (eval.holdout_fraction = 0)"}
    lines = {line["item"]: line for line in data["cost"]["lines"]}
    assert lines["evaluation"]["usd"] is None
    for name in data["plots"].values():
        assert_drawn_png(folder / name)


def test_a_job_that_has_only_started_still_gets_a_report(store, tmp_path):
    job = gateway_pb2.Job(name="jobs/early", state=gateway_pb2.JOB_STATE_GENERATING)
    folder = fetch(store, build_report(job, store), tmp_path / "report")
    page = (folder / "index.html").read_text()
    assert "not available: the job has not trained yet (state: generating)" in page
    assert "not available: the judge has not finished yet (state: generating)" in page
    assert "not available: the job has not been evaluated yet (state: generating)" in page
    assert json.loads((folder / "report.json").read_text())["plots"] == {"cost": "cost.png"}


def test_corrupt_inputs_become_notes(store, tmp_path):
    job = make_job(store, tmp_path, log=[{"step": "one"}, *log_rows(3)])
    job.outputs.curated.CopyFrom(put_jsonl(store, "jobs/j1/curated.jsonl",
                                           [json.dumps(curated_rows()[0]), "{not json"]))
    job.outputs.evaluation.CopyFrom(put_jsonl(store, "jobs/j1/evaluation.jsonl", ["[1, 2]"]))
    data = write_report(job, store, tmp_path / "report")
    assert data["candidates"]["available"] is False
    assert "curated set could not be read" in data["candidates"]["note"]
    assert data["evaluation"]["available"] is True  # the job's own figures
    assert data["evaluation"]["per_prompt"]["available"] is False
    assert [r["step"] for r in data["training"]["steps"]] == [1, 2, 3]  # the bad row skipped
    assert "candidates" not in data["plots"] and "training" in data["plots"]


def test_user_text_is_escaped(store, tmp_path):
    job = make_job(store, tmp_path, display_name='<img src=x onerror="alert(1)">', prompt=EVIL)
    job.evaluation.promotion_reason = "</p><b>bold</b>"
    job.error.message = "<iframe>"
    folder = fetch(store, build_report(job, store), tmp_path / "report")
    page = (folder / "index.html").read_text()
    assert "<script" not in page and "<iframe" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    data = json.loads((folder / "report.json").read_text())
    images = re.findall(r"<img\b[^>]*>", page)
    assert sorted(re.search(r'src="([^"]+)"', i).group(1) for i in images) == sorted(
        data["plots"].values())
    assert data["evaluation"]["examples"][0]["prompt"] == EVIL  # kept as data, escaped on the page


# -- headless Chromium ----------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", () => {
  // Once every image has loaded (or failed): what Chromium decoded and drew of each.
  const found = [...document.images].map(img => {
    const seen = {src: img.getAttribute("src"), complete: img.complete,
                  naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                  width: img.width};
    try {
      const canvas = document.createElement("canvas");
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(img, 0, 0);
      const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let opaque = 0, inked = 0;
      for (let k = 0; k < rgba.length; k += 4) {
        if (rgba[k + 3] === 0) continue;
        opaque++;
        if (0.299 * rgba[k] + 0.587 * rgba[k + 1] + 0.114 * rgba[k + 2] < 200) inked++;
      }
      Object.assign(seen, {opaque, inked});
    } catch (error) {
      seen.error = String(error);
    }
    return seen;
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def chromium_images(folder: Path, tmp_path: Path) -> list[dict]:
    """Opens the report in headless Chromium; returns what it drew of each <img>.

    The page is opened as it is, with a probe script added at its end (a copy, probe.html, in the
    same folder so relative image paths resolve the same). Once the page has loaded, the script
    draws every image onto a canvas and counts its opaque and dark pixels; it writes those into
    the DOM that --dump-dom prints. (A truncated PNG still has its size from the header, so
    naturalWidth alone would not catch it; its missing rows are transparent.)
    """
    page = (folder / "index.html").read_text()
    probe = folder / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / f"chromium-profile-{folder.name}"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,2000",
         # file:// images may be read back from a canvas (otherwise it is tainted)
         "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
         probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the probe did not run: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return json.loads(html.unescape(match.group(1)))


def test_chromium_renders_every_plot(store, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    folder = fetch(store, build_report(make_job(store, tmp_path), store), tmp_path / "report")
    plots = json.loads((folder / "report.json").read_text())["plots"]

    images = chromium_images(folder, tmp_path)
    assert sorted(i["src"] for i in images) == sorted(plots.values())
    for image in images:
        assert "error" not in image, image
        with Image.open(folder / image["src"]) as png:
            (width, height), inked = png.size, sum(png.convert("L").histogram()[:200])
        assert image["complete"], image
        assert (image["naturalWidth"], image["naturalHeight"]) == (width, height), image
        assert image["width"] > 300, image  # laid out on the page, not collapsed
        # drawn whole, and the same drawing as in the file: axes, bars and lines, not a blank
        assert image["opaque"] == width * height, image
        assert inked > 0.01 * width * height
        assert image["inked"] == pytest.approx(inked, rel=0.01), image

    # The check can fail: the same page with one PNG truncated shows that image as broken.
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / plots["cost"]).write_bytes((folder / plots["cost"]).read_bytes()[:2000])
    by_src = {i["src"]: i for i in chromium_images(broken, tmp_path)}
    cost = by_src[plots["cost"]]
    assert cost["opaque"] < cost["naturalWidth"] * cost["naturalHeight"]
    training = by_src[plots["training"]]
    assert training["opaque"] == training["naturalWidth"] * training["naturalHeight"]


# -- distill report -------------------------------------------------------------------------------

@pytest.fixture
def gateway(tmp_path):
    settings = GatewaySettings(port=0, grace_seconds=0, store_url=f"file://{tmp_path / 'store'}",
                               db_path=tmp_path / "gateway.db")
    with serve_in_thread(settings, lambda: build(settings)) as address:
        jobs = JobStore(tmp_path / "gateway.db")
        try:
            yield address, LocalStore(tmp_path / "store"), jobs
        finally:
            jobs.close()


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    return exited.value.code


def test_distill_report_downloads_the_report_folder(gateway, tmp_path, capsys):
    address, store, jobs = gateway
    job = make_job(store, tmp_path)
    job.outputs.report.CopyFrom(build_report(job, store))
    jobs.create_job(job)
    out = tmp_path / "downloaded"
    assert run_cli("--gateway", address, "report", "jobs/j1", "--out", str(out)) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str((out / "index.html").resolve())
    stored = fetch(store, job.outputs.report, tmp_path / "stored")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in stored.iterdir())
    for path in stored.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes()


def test_distill_report_without_a_report_names_the_state(gateway, tmp_path, capsys):
    address, _, jobs = gateway
    jobs.create_job(gateway_pb2.Job(name="jobs/busy", state=gateway_pb2.JOB_STATE_TRAINING))
    assert run_cli("--gateway", address, "report", "jobs/busy", "--out",
                   str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert "FAILED_PRECONDITION" in err and "no report yet" in err and "training" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
