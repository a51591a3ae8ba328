"""The forgetting audit on benchmark-shaped tasks: per-example choices with few-shot
(HellaSwag-style) and partial scoring (Winogrande-style), base vs a damaging adapter on
the tiny trained GPT-2. Paired deltas and flips are computed as for any classification
task, and the HTML report shows each example's own choices, escaped."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from tests.audits.conftest import write_jsonl

WORDS = [
    "the",
    "movie",
    "film",
    "story",
    "actor",
    "plot",
    "great",
    "good",
    "bad",
    "awful",
    "boring",
    "fun",
]


def hellaswag_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        endings = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) for _ in range(4)]
        endings = [f"{e} {j}" for j, e in enumerate(endings)]  # all different
        if i == 0:
            endings[3] = "<b>bold</b> & <script>alert(1)</script>"
        rows.append(
            {
                "ctx": " ".join(rng.choice(WORDS) for _ in range(8)),
                "activity_label": "Reviews",
                "endings": endings,
                "label": str(rng.randrange(4)),
            }
        )
    return rows


def winogrande_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.sample(WORDS, 2)
        rest = " ".join(rng.choice(WORDS) for _ in range(4))
        rows.append({"sentence": f"the {a} and the {b} but _ was {rest}.", "option1": a,
                     "option2": b, "answer": rng.choice(["1", "2"])})  # fmt: skip
    return rows


SUITE = """schema_version: 1
name: bench
model:
  path: {model}
  adapter: {adapter}
tasks:
  - id: hs
    kind: classification
    data: data/hs.jsonl
    prompt: "{{{{ activity_label }}}}: {{{{ ctx }}}}"
    choices: {{field: endings}}
    label: label
    fewshot: {{n: 1}}
    metrics: [accuracy, accuracy_norm]
  - id: wg
    kind: classification
    data: data/wg.jsonl
    prompt: "{{{{ sentence.split('_')[0] }}}}{{{{ choice }}}}"
    continuation: "{{{{ sentence.split('_')[1].strip() }}}}"
    choices: {{expr: "[sentence.split('_')[0] + option1, sentence.split('_')[0] + option2]"}}
    label: {{expr: "answer | int - 1"}}
    metrics: [accuracy, accuracy_norm]
  - id: gsm
    kind: generation
    data: data/gsm.jsonl
    prompt: "Question: {{{{ question }}}}\nAnswer:"
    reference: answer
    fewshot: {{n: 2}}
    max_new_tokens: 8
    stop: ["Question:"]
    extract: {{regex: '(-?[0-9.,]+)', select: last, fallback: "<none>"}}
    normalize: {{remove: [",", '(?s).*#### '], strip: true}}
    metrics: [exact_match]
seed: 3
bootstrap: {{samples: 200}}
audits:
  forgetting: {{tasks: [hs, wg, gsm]}}
gates:
  - {{metric: forgetting.hs.accuracy_norm, max_drop: 0.5, significant: true}}
"""


@pytest.mark.slow
def test_forgetting_on_per_example_choices(
    tmp_path: Path, trained_gpt2: Path, damaging_adapter: Path
) -> None:
    write_jsonl(tmp_path / "data" / "hs.jsonl", hellaswag_rows(24, seed=1))
    write_jsonl(tmp_path / "data" / "wg.jsonl", winogrande_rows(24, seed=2))
    gsm = [
        {"question": f"the film {i} and {i}?", "answer": f"it is {i}\n#### {i}"} for i in range(12)
    ]
    gsm[0]["question"] = "<i>x</i> & y?"
    write_jsonl(tmp_path / "data" / "gsm.jsonl", gsm)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(model=trained_gpt2, adapter=damaging_adapter))
    out = tmp_path / "out"
    code = main(["run", str(suite), "--out", str(out), "--no-progress"])
    assert code in (0, 1)
    results = json.loads((out / "results.json").read_text())

    hs = results["tasks"]["hs"]
    first = hs["records"][0]
    assert first["target_delimiter"] == " " and len(first["choices"]) == 4
    assert first["prompt"].count("Reviews: ") == 2  # one shot, then the example
    wg = results["tasks"]["wg"]["records"][0]
    assert len(wg["contexts"]) == 2 and wg["prompt"] == ""

    section = results["audits"]["forgetting"]["tasks"]
    for task_id in ("hs", "wg"):
        audited = section[task_id]
        n = audited["n_examples"]
        assert n == 24
        acc = audited["metrics"]["accuracy"]
        flips = audited["flips"]
        # accuracy's paired delta is the net of the flips, as for any classification task
        net = (flips["n_wrong_to_correct"] - flips["n_correct_to_wrong"]) / n
        assert acc["delta"] == pytest.approx(net)
        norm = audited["metrics"]["accuracy_norm"]
        assert norm["delta"] == pytest.approx(norm["checkpoint"]["value"] - norm["base"]["value"])
        assert "p_value" in norm
    assert results["gates"][0]["metric"] == "forgetting.hs.accuracy_norm"
    gen = results["tasks"]["gsm"]["records"]
    assert all("answer" in r and "prediction" in r for r in gen)
    assert [r["gold_answers"] for r in gen[:2]] == [["0"], ["1"]]
    moved = section["gsm"]
    assert moved["n_examples"] == 12 and moved["flips"] is None
    em = moved["metrics"]["exact_match"]
    assert em["delta"] == pytest.approx(em["checkpoint"]["value"] - em["base"]["value"])
    assert moved["examples"]["exact_match"]["n_worse"] >= 0

    html = (out / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    # the ending is shown (in the example's expansion), escaped
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
