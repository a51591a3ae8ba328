"""finetune.data.reweight: weights that balance group (x label) cells, and their effect on the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finetune.config.schema import load_config
from finetune.data.examples import Example
from finetune.data.reweight import balance_weights
from finetune.train.run import train
from finetune.train.trainer import token_losses, weighted_ce
from harness.errors import UserError
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

GROUPS = [("a", 0), ("a", 0), ("a", 0), ("a", 1), ("b", 0), ("b", 0)]


def examples() -> list[Example]:
    return [
        Example(f"p{i}", " c", "t.jsonl", i, {"group": g, "label": y})
        for i, (g, y) in enumerate(GROUPS, start=1)
    ]


def test_group_x_label_cells_get_equal_total_weight() -> None:
    weights, report = balance_weights(examples(), "group", "label")
    # N = 6 examples in K = 3 cells: w = 6 / (3 * n_cell)
    assert weights == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0])
    assert report["cells"] == [
        {"group": "a", "label": "0", "count": 3, "weight": pytest.approx(2 / 3)},
        {"group": "a", "label": "1", "count": 1, "weight": 2.0},
        {"group": "b", "label": "0", "count": 2, "weight": 1.0},
    ]
    assert sum(weights) == pytest.approx(len(weights))  # the mean weight is 1


def test_group_only_cells() -> None:
    weights, report = balance_weights(examples(), "group")
    # groups a (4) and b (2): 6 / (2 * 4) and 6 / (2 * 2); each group totals 3
    assert weights == pytest.approx([0.75] * 4 + [1.5] * 2)
    assert report["by"] == ["group"]


def test_a_row_without_the_group_field_is_located() -> None:
    rows = [*examples(), Example("p7", " c", "t.jsonl", 7, {"label": 1})]
    with pytest.raises(UserError) as exc:
        balance_weights(rows, "group", "label")
    assert exc.value.messages == [
        "t.jsonl line 7: missing field 'group' (named by fairness.reweight.group)"
    ]


def test_weights_change_the_loss(tiny_gpt2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.train.encode import Collator, encode_examples

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    rows = [
        Example("the movie was", " good", "t", 1),
        Example("the plot", " was awful and boring", "t", 2),
    ]
    batch = Collator(0)(encode_examples(rows, tok, 64, add_eos=True).features)
    with torch.no_grad():
        ce, mask = token_losses(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    per_example = (ce.sum(1) / mask.sum(1)).tolist()
    n = mask.sum(1).tolist()
    plain = weighted_ce(ce, mask, None).item()
    weighted = weighted_ce(ce, mask, torch.tensor([3.0, 0.5])).item()
    # each token weighs its example's weight: sum(w_i * n_i * mean_i) / sum(w_i * n_i)
    expected = (3 * n[0] * per_example[0] + 0.5 * n[1] * per_example[1]) / (3 * n[0] + 0.5 * n[1])
    assert weighted == pytest.approx(expected, rel=1e-5)
    assert plain == pytest.approx(
        sum(a * b for a, b in zip(n, per_example, strict=True)) / sum(n), rel=1e-5
    )
    assert abs(weighted - plain) > 1e-3


def test_the_head_at_target_positions_gives_the_full_computation(tiny_gpt2: Path) -> None:
    """The training loss reads logits only where a target token follows (padding and
    prompt skipped); plain and weighted, it equals the loss over the full logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.train.encode import IGNORE, Collator, encode_examples
    from finetune.train.trainer import target_logits

    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    rows = [
        Example("the movie was", " good", "t", 1),
        Example("the plot of the long film", " was awful and boring", "t", 2),
        Example("", "a text row is trained on whole", "t", 3),
    ]
    batch = Collator(0)(encode_examples(rows, tok, 64, add_eos=True).features)
    labels = batch["labels"]
    weight = torch.tensor([3.0, 0.5, 1.25])
    with torch.no_grad():
        full_ce, full_mask = token_losses(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
            labels,
        )
        mask = labels[:, 1:].ne(IGNORE)
        logits, _ = target_logits(model, batch["input_ids"], batch["attention_mask"], mask)
    assert logits.shape == (int(mask.sum()), model.config.vocab_size)
    assert int(mask.sum()) < mask.numel()  # prompt and padding positions were skipped
    ce = torch.nn.functional.cross_entropy(logits, labels[:, 1:][mask], reduction="none")
    ones = torch.ones_like(ce, dtype=torch.bool)
    per_token = weight[:, None].expand_as(mask)[mask]
    assert weighted_ce(ce, ones, None).item() == pytest.approx(
        weighted_ce(full_ce, full_mask, None).item(), rel=1e-6
    )
    assert weighted_ce(ce, ones, per_token).item() == pytest.approx(
        weighted_ce(full_ce, full_mask, weight).item(), rel=1e-6
    )


@pytest.mark.slow
def test_reweighted_run_optimizes_the_weighted_loss(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = new_task_rows(24)
    for i, row in enumerate(rows):  # an unbalanced group column: 20 x "a", 4 x "b"
        row["group"] = "b" if i % 6 == 0 else "a"
        if row["group"] == "b":
            row["completion"] += " and the team won the game in the city today"
    write_jsonl(tmp_path / "train.jsonl", rows)
    path = write_config(
        tmp_path,
        tiny_gpt2,
        fairness={"reweight": {"group": "group"}},
        data={"train": ["train.jsonl"], "val_split": 0.25},
        training={"max_steps": 2, "eval_steps": 1},
    )
    result = train(load_config(path))
    cells = result.manifest["curation"]["reweight"]["cells"]
    counts = {c["group"]: c["count"] for c in cells}
    weights = {c["group"]: c["weight"] for c in cells}
    n = sum(counts.values())
    assert weights == pytest.approx({g: n / (2 * k) for g, k in counts.items()})
    state = json.loads(
        (tmp_path / "out" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text()
    )
    first = next(e for e in state["log_history"] if "train_ce" in e)
    # the objective (weighted) differs from the unweighted cross-entropy it is logged with
    assert abs(first["loss"] - first["train_ce"]) > 1e-3
