"""finetune merge: the merged checkpoint scores as the adapter on its base, and bad input
is refused before anything is written.

Acceptance (issue 18): the harness's log-likelihoods and rolling log-likelihoods of the
merged folder, loaded as a plain model, equal those of base + adapter within 1e-4, and
greedy generations are the same; on a tiny GPT-2 (Conv1D, fan_in_fan_out) trained by a
real ``finetune train`` run, and on a tiny Llama with LoRA, rsLoRA and DoRA adapters
built with peft directly (random non-zero A and B, so the merge changes every target).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from finetune.cli import main
from finetune.export.merge import (
    BAD_ADAPTER,
    BAD_SHARD_SIZE,
    BASE_GONE,
    BASE_MISMATCH,
    CANNOT_WRITE,
    MERGE_RECORD,
    NO_FOLDER,
    NO_MANIFEST,
    NOT_A_RUN,
    OUT_HOLDS_INPUT,
    OUT_NOT_EMPTY,
    QUANTIZED_BASE,
    QUANTIZED_RUN,
)
from harness.atomic import current_umask
from harness.model.fingerprint import fingerprint_folder
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

TOLERANCE = 1e-4  # the acceptance bound on any score difference

PAIRS = [
    ("headline: market price rose team\nsummary:", " market price rose team"),
    ("headline: city news won game\nsummary:", " city game news won"),
    ("the movie was", " great"),
    ("the movie was", " awful and boring"),
    ("", "the story is fun."),
]
TEXTS = [
    "the film was really good and the actor loved it.",
    "market price fell today, the city report said.",
    "headline: team lost game\nsummary: game lost team",
]
PROMPTS = ["headline: market rose price won\nsummary:", "the plot", "she loved"]


def _scores(source: Any) -> tuple[list[float], list[float], list[str]]:
    from harness.model.language_model import load_model

    lm = load_model(source)
    ll = [s for s, _greedy, _n in lm.loglikelihood(PAIRS, batch_size=2)]
    rolling = [s for s, _n in lm.rolling_loglikelihood(TEXTS, batch_size=2)]
    generated = lm.generate(PROMPTS, max_new_tokens=8, batch_size=2)
    return ll, rolling, generated


def compare(base: Path, run: Path, merged: Path) -> dict[str, float]:
    """Max absolute differences adapter-on vs merged (and the adapter's own effect),
    asserting equal generations."""
    from harness.model.files import ModelSource

    on = _scores(ModelSource(path=str(base), adapter=str(run)))
    alone = _scores(ModelSource(path=str(merged)))
    plain = _scores(ModelSource(path=str(base)))
    assert on[2] == alone[2]
    return {
        "loglikelihood": max(abs(a - b) for a, b in zip(on[0], alone[0], strict=True)),
        "rolling": max(abs(a - b) for a, b in zip(on[1], alone[1], strict=True)),
        # the adapter changed the scores: a merge that dropped it would fail the bound
        "adapter_effect": max(abs(a - b) for a, b in zip(on[0], plain[0], strict=True)),
        "rolling_adapter_effect": max(abs(a - b) for a, b in zip(on[1], plain[1], strict=True)),
    }


def write_manifest(run: Path, base: Path, **config: Any) -> None:
    """The manifest fields merge reads, as ``finetune train`` writes them."""
    manifest = {
        "manifest_version": 1,
        "base_model": fingerprint_folder(base, allow_pickle=False).as_dict(),
        "config": {"base_model": {"path": str(base), **config}},
    }
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def peft_run(base: Path, run: Path, *, seed: int = 0, quantized: Any = None, **lora: Any) -> Path:
    """An adapter folder built with peft directly: random A and B (and DoRA magnitudes),
    the base's tokenizer and a manifest naming the base; on the base loaded with the
    ``quantized`` BitsAndBytesConfig when given (a QLoRA adapter)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quantized is not None:
        model = AutoModelForCausalLM.from_pretrained(
            base, quantization_config=quantized, device_map="cpu"
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(base)
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        fan_in_fan_out=conv1d,
        **lora,
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.2)
    peft_model.save_pretrained(str(run), safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(run)
    write_manifest(run, base)
    return run


@pytest.fixture(scope="module")
def gpt2_run(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (short) ``finetune train`` run on the tiny GPT-2."""
    from finetune.config.schema import load_config
    from finetune.train.run import train
    from tests.finetune.conftest import one_thread

    folder = tmp_path_factory.mktemp("gpt2-run")
    write_jsonl(folder / "train.jsonl", new_task_rows(32))
    config = write_config(folder, tiny_gpt2, training={"epochs": 1, "lr": 0.05})
    with one_thread():
        train(load_config(config))
    return folder / "out"


@pytest.fixture(scope="module")
def llama_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return peft_run(tiny_llama, tmp_path_factory.mktemp("llama-run"))


def test_merged_gpt2_scores_as_adapter_on(
    tiny_gpt2: Path, gpt2_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merged"
    assert main(["merge", str(gpt2_run), "--out", str(out)]) == 0
    assert "merged (float32):" in capsys.readouterr().err
    diffs = compare(tiny_gpt2, gpt2_run, out)
    assert diffs["loglikelihood"] < TOLERANCE and diffs["rolling"] < TOLERANCE, diffs
    assert min(diffs["adapter_effect"], diffs["rolling_adapter_effect"]) > 100 * TOLERANCE
    # a plain checkpoint: safetensors weights, no adapter files, the run's tokenizer
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "adapter_config.json" not in names
    assert (out / "tokenizer.json").read_bytes() == (gpt2_run / "tokenizer.json").read_bytes()
    record = json.loads((out / MERGE_RECORD).read_text())
    manifest = json.loads((gpt2_run / "manifest.json").read_text())
    assert record["base_model"]["fingerprint"] == manifest["base_model"]["fingerprint"]
    assert record["adapter"]["fingerprint"] == manifest["adapter"]["fingerprint"]
    assert record["adapter_base"]["match"] is True
    assert record["lora"]["peft_type"] == "LORA"
    assert record["merged"]["fingerprint"] == fingerprint_folder(out, allow_pickle=False).digest
    assert record["dtype"] == "float32" and record["warnings"] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    umask = current_umask()
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o666 & ~umask}
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


@pytest.mark.parametrize(
    ("arch", "lora"),
    [
        ("tiny_llama", {}),
        ("tiny_llama", {"use_rslora": True}),
        ("tiny_llama", {"use_dora": True}),
        ("tiny_gpt2", {"use_dora": True}),  # DoRA on Conv1D (fan_in_fan_out)
    ],
    ids=["llama-lora", "llama-rslora", "llama-dora", "gpt2-dora"],
)
def test_merged_peft_adapter_scores_as_adapter_on(
    arch: str, lora: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base = request.getfixturevalue(arch)
    run = peft_run(base, tmp_path / "run", seed=1, **lora)
    out = tmp_path / "merged"
    # a small shard size: the checkpoint is sharded with an index, as a large one is
    assert main(["merge", str(run), "--out", str(out), "--max-shard-size", "40KB"]) == 0
    assert len(list(out.glob("model-*.safetensors"))) > 1
    assert (out / "model.safetensors.index.json").is_file()
    diffs = compare(base, run, out)
    assert diffs["loglikelihood"] < TOLERANCE and diffs["rolling"] < TOLERANCE, diffs
    assert min(diffs["adapter_effect"], diffs["rolling_adapter_effect"]) > 100 * TOLERANCE
    record = json.loads((out / MERGE_RECORD).read_text())
    assert record["lora"]["use_dora"] is bool(lora.get("use_dora"))
    assert record["lora"]["use_rslora"] is bool(lora.get("use_rslora"))


def test_bfloat16_merge_saves_bfloat16_weights(llama_run: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    out = tmp_path / "merged"
    assert main(["merge", str(llama_run), "--out", str(out), "--dtype", "bfloat16"]) == 0
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        dtypes = {str(fh.get_tensor(k).dtype) for k in fh.keys()}  # noqa: SIM118
    assert dtypes == {"torch.bfloat16"}
    assert json.loads((out / MERGE_RECORD).read_text())["dtype"] == "bfloat16"


def _error(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_not_a_run_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["merge", "nope", "--out", "m"]) == 2
    assert _error(capsys) == ["error: " + NOT_A_RUN.format(run="nope", reason=NO_FOLDER)]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "adapter_config.json").write_text("{}")
    assert main(["merge", "run", "--out", "m"]) == 2
    assert _error(capsys) == ["error: " + NOT_A_RUN.format(run="run", reason=NO_MANIFEST)]
    assert main(["merge", "run", "--out", "m", "--max-shard-size", "5 gigs"]) == 2
    assert _error(capsys) == ["error: " + BAD_SHARD_SIZE.format(size="5 gigs")]
    assert not (tmp_path / "m").exists()


def test_bad_adapter_config_is_exit_2(
    llama_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = tmp_path / "run"
    shutil.copytree(llama_run, run)
    (run / "adapter_config.json").write_text("[1]")
    monkeypatch.chdir(tmp_path)
    assert main(["merge", "run", "--out", "m"]) == 2
    assert _error(capsys) == ["error: " + NOT_A_RUN.format(run="run", reason=BAD_ADAPTER)]


def test_moved_base_needs_base_and_its_copy_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from tests.tiny_models import build_model

    base = build_model(tmp_path / "base", "llama")
    peft_run(base, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    base.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["merge", "run", "--out", "m"]) == 2
    assert _error(capsys) == ["error: " + BASE_GONE.format(run="run", path=str(base))]
    # the same files elsewhere: the same fingerprint
    assert main(["merge", "run", "--out", "m", "--base", "moved"]) == 0
    assert json.loads((tmp_path / "m" / MERGE_RECORD).read_text())["adapter_base"]["match"]


def test_pickle_base_needs_allow_pickle(
    tiny_llama: Path, llama_run: Path, tmp_path: Path, monkeypatch: Any, capsys: Any
) -> None:
    import torch
    from safetensors.torch import load_file

    from harness.model.files import OPT_IN_RUN, PICKLE_REFUSED

    base = tmp_path / "pickled"
    shutil.copytree(tiny_llama, base)
    weights = load_file(str(base / "model.safetensors"))
    torch.save(weights, base / "pytorch_model.bin")
    (base / "model.safetensors").unlink()
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    args = ["merge", str(llama_run), "--out", "m", "--base", "pickled"]
    assert main(args) == 2
    refused = PICKLE_REFUSED.format(
        what="base model", path=base, files="pytorch_model.bin", opt_in=OPT_IN_RUN
    )
    assert _error(capsys) == ["error: " + refused]
    # allowed: loaded by torch's restricted unpickler; the weights are another file now,
    # so the base has another fingerprint and the mismatch must be allowed too
    assert main([*args, "--allow-pickle", "--allow-base-mismatch"]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_existing_out_needs_overwrite(
    llama_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "old.txt").write_text("old")
    assert main(["merge", str(llama_run), "--out", "m"]) == 2
    assert _error(capsys) == ["error: " + OUT_NOT_EMPTY.format(out="m")]
    assert main(["merge", str(llama_run), "--out", "m", "--overwrite"]) == 0
    assert not (tmp_path / "m" / "old.txt").exists()
    assert (tmp_path / "m" / MERGE_RECORD).is_file()
    # never over the run itself, even with --overwrite
    capsys.readouterr()
    assert main(["merge", str(llama_run), "--out", str(llama_run.parent), "--overwrite"]) == 2
    expected = OUT_HOLDS_INPUT.format(out=str(llama_run.parent), what="run", path=str(llama_run))
    assert _error(capsys) == ["error: " + expected]


def test_base_mismatch_is_exit_2_unless_allowed(
    llama_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from tests.tiny_models import build_model

    other = build_model(tmp_path / "other", "llama", seed=7)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["merge", str(llama_run), "--out", "m", "--base", "other"]) == 2
    manifest = json.loads((llama_run / "manifest.json").read_text())
    expected = BASE_MISMATCH.format(
        base="other",
        actual=fingerprint_folder(other, allow_pickle=False).digest,
        run=str(llama_run),
        expected=manifest["base_model"]["fingerprint"],
    )
    assert _error(capsys) == ["error: " + expected]
    assert not (tmp_path / "m").exists()
    args = ["merge", str(llama_run), "--out", "m", "--base", "other", "--allow-base-mismatch"]
    assert main(args) == 0
    record = json.loads((tmp_path / "m" / MERGE_RECORD).read_text())
    assert record["adapter_base"]["match"] is False and record["adapter_base"]["allowed"]


def test_quantized_base_is_refused(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    config = json.loads((base / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(config))
    run = peft_run(tiny_llama, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["merge", "run", "--out", "m", "--base", "base"]) == 2
    expected = QUANTIZED_BASE.format(base="base", method="bitsandbytes")
    assert _error(capsys) == ["error: " + expected]
    assert run.is_dir() and not (tmp_path / "m").exists()


def test_qlora_run_merges_with_a_warning(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """An adapter trained on the 4-bit base (its LoRA layers wrap bitsandbytes'
    Linear4bit) merges into the unquantized base, with the warning."""
    import torch
    from transformers import BitsAndBytesConfig

    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")
    four_bit = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    try:
        run = peft_run(tiny_llama, tmp_path / "run", quantized=four_bit)
    except (RuntimeError, ImportError) as exc:  # a build of bitsandbytes without CPU support
        pytest.skip(f"bitsandbytes cannot quantize on this machine: {exc}")
    write_manifest(run, tiny_llama, quantization={"bits": 4, "quant_type": "nf4"})
    monkeypatch.chdir(tmp_path)
    assert main(["merge", "run", "--out", "m"]) == 0
    warning = QUANTIZED_RUN.format(run="run", bits=4, dtype="float32")
    assert f"warning: {warning}" in " ".join(capsys.readouterr().err.split())
    record = json.loads((tmp_path / "m" / MERGE_RECORD).read_text())
    assert record["warnings"] == [warning]
    assert record["trained_on_quantized_base"] == {"bits": 4, "quant_type": "nf4"}


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("boom")])
def test_failed_save_leaves_no_output(
    llama_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    error: Exception,
) -> None:
    from transformers import PreTrainedModel

    def half_save(self: Any, folder: str, **kwargs: Any) -> None:
        (Path(folder) / "model-00001-of-00002.safetensors").write_bytes(b"half")
        raise error

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", half_save)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("old")
    for out, extra in (("m", []), ("kept", ["--overwrite"])):
        code = main(["merge", str(llama_run), "--out", out, *extra])
        err = capsys.readouterr().err
        if isinstance(error, OSError):
            assert code == 2
            expected = CANNOT_WRITE.format(out=out, reason="No space left on device")
            assert err.splitlines() == [f"error: {expected}"]
        else:
            assert code == 3 and "internal error: RuntimeError: boom" in err
    assert not (tmp_path / "m").exists()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
