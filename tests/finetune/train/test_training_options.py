"""The memory and adapter options of issue 18 on tiny real models: each reaches
TrainingArguments / peft as stated; gradient checkpointing changes neither the losses nor
the gradients; DoRA, rsLoRA, modules_to_save and regex targets train and the harness
scores the adapter; a bitsandbytes 4-bit or 8-bit base trains (QLoRA); what cannot work is a
located UserError."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from finetune.config.schema import FinetuneConfig, load_config
from finetune.data.curate import curate
from finetune.train import encode, options
from finetune.train.options import EWC_QUANTIZED, FP16_ON_CPU, HALF_BASE_SAVED, NO_SUCH_MODULE
from finetune.train.run import _build_trainer, train
from finetune.train.validation import resolve_metric
from harness.data.rows import display_path
from harness.errors import UserError
from harness.model import language_model
from harness.model.language_model import ModelSource, load_model
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

TWO_STEPS = {"max_steps": 2, "eval_steps": 1, "batch_size": 4}


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny GPT-2 and Llama without dropout (GPT-2's default is 0.1), so two runs
    differ only by the option compared."""
    from tests.tiny_models import build_model

    out = {}
    for arch in ("gpt2", "llama"):
        folder = build_model(tmp_path_factory.mktemp(f"nodrop-{arch}"), arch)
        config = json.loads((folder / "config.json").read_text())
        for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout"):
            if key in config:
                config[key] = 0.0
        (folder / "config.json").write_text(json.dumps(config))
        out[arch] = folder
    return out


def config_at(folder: Path, base: Path, **sections: Any) -> FinetuneConfig:
    write_jsonl(folder / "train.jsonl", new_task_rows(16))
    training = {**TWO_STEPS, **sections.pop("training", {})}
    return load_config(write_config(folder, base, training=training, **sections))


def built(config: FinetuneConfig, callbacks: list[Any] = []) -> Any:  # noqa: B006
    """The Trainer ``finetune train`` would run, before training."""
    curated = curate(config, config.eval_data)
    v = config.validation
    metric, labels = resolve_metric(v.metric, v.max_labels, curated.validation)
    return _build_trainer(config, curated, callbacks, metric, labels)[0]


def at(config: FinetuneConfig, line_text: str, offset: int = 0) -> str:
    """``FILE:LINE:COL`` of the config file's line that reads ``line_text`` (stripped),
    the column ``offset`` characters after its indentation."""
    path = config.source_path
    assert path is not None
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == line_text)
    indent = len(lines[line - 1]) - len(lines[line - 1].lstrip())
    return f"{display_path(path)}:{line}:{indent + 1 + offset}"


class Recorder(TrainerCallback):
    """Each step's training loss and the gradients of the trained weights (after
    clipping, before the optimizer step)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.grads: list[dict[str, torch.Tensor]] = []
        self.autocast: set[torch.dtype | None] = set()  # in the training forwards

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        def seen(module: Any, inputs: Any) -> None:
            if module.training:
                on = torch.is_autocast_enabled("cpu")
                self.autocast.add(torch.get_autocast_dtype("cpu") if on else None)

        # inside the model: accelerate enters autocast in a wrapper of its forward
        for module in list(kw["model"].modules())[1:]:
            module.register_forward_pre_hook(seen)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        model = kw["model"]
        self.grads.append(
            {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        )

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def test_every_option_reaches_training_arguments_and_peft(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    config = config_at(
        tmp_path,
        bases["llama"],
        training={"precision": "bf16", "gradient_checkpointing": True},
        lora={
            "use_dora": True,
            "use_rslora": True,
            "modules_to_save": ["norm"],
            "target_modules": {"regex": r".*self_attn\.(q|v)_proj"},
        },
    )
    trainer = built(config)
    args = trainer.args
    assert args.bf16 and not args.fp16
    assert args.use_cpu == (not torch.accelerator.is_available())  # bf16 on the CPU needs it
    assert args.activation_checkpointing and args.gradient_checkpointing  # the alias mirrors
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}
    peft = trainer.model.peft_config["default"]
    assert (peft.use_dora, peft.use_rslora) == (True, True)
    assert peft.target_modules == r".*self_attn\.(q|v)_proj"  # peft's full-match regex
    assert "norm" in peft.modules_to_save
    trained = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trained if ".lora_" in n}
    assert adapted == {"q_proj", "v_proj"}
    assert any("lora_magnitude_vector" in n for n in trained)  # DoRA's magnitudes
    assert any("norm.modules_to_save" in n for n in trained)
    assert {p.dtype for p in trained.values()} == {torch.float32}
    # the defaults: none of them
    plain = built(config_at(tmp_path / "plain", bases["llama"]))
    assert not (plain.args.bf16 or plain.args.fp16 or plain.args.activation_checkpointing)
    peft = plain.model.peft_config["default"]
    assert (peft.use_dora, peft.use_rslora, peft.modules_to_save) == (False, False, None)


def test_precision_arguments(bases: dict[str, Path], tmp_path: Path) -> None:
    """fp16 asks the Trainer for fp16 (where a GPU runs it); fp32 asks for nothing."""
    for precision, expected in (("fp16", {"fp16": True}), ("fp32", {})):
        config = config_at(tmp_path / precision, bases["gpt2"], training={"precision": precision})
        assert options.precision_arguments(config) == expected


@pytest.mark.skipif(torch.accelerator.is_available(), reason="fp16 runs on a GPU")
def test_fp16_on_the_cpu_is_a_located_error(bases: dict[str, Path], tmp_path: Path) -> None:
    config = config_at(tmp_path, bases["gpt2"], training={"precision": "fp16"})
    with pytest.raises(UserError) as exc:
        built(config)
    where = at(config, "precision: fp16", len("precision: "))
    assert exc.value.messages == [f"{where}: training.precision: {FP16_ON_CPU}"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_gradient_checkpointing_gives_the_same_losses_and_gradients(
    bases: dict[str, Path], tmp_path: Path, arch: str
) -> None:
    runs = []
    for on in (False, True):
        folder = tmp_path / str(on)
        config = config_at(folder, bases[arch], training={"gradient_checkpointing": on})
        recorder = Recorder()
        train(config, callbacks=[recorder])
        runs.append(recorder)
    plain, checkpointed = runs
    assert plain.autocast == checkpointed.autocast == {None}  # fp32: no autocast
    assert len(plain.losses) == len(plain.grads) == 2
    # observed on this CPU: identical to the last bit (0.0); the tolerance allows for
    # another kernel order in the recomputed forward
    assert checkpointed.losses == pytest.approx(plain.losses, abs=1e-6)
    for before, after in zip(plain.grads, checkpointed.grads, strict=True):
        assert before.keys() == after.keys()
        for name in before:
            torch.testing.assert_close(after[name], before[name], rtol=1e-5, atol=1e-7)


def test_packing_uses_the_packed_collator(bases: dict[str, Path], tmp_path: Path) -> None:
    """training.packing selects encode.PackedCollator, and a packed run's training
    losses are the padded run's (1e-4, float32: the same tokens and weights)."""
    config = config_at(tmp_path, bases["llama"], training={"packing": True})
    collator = built(config).data_collator
    assert isinstance(collator, encode.PackedCollator)
    losses = []
    for packing in (False, True):
        config = config_at(tmp_path / str(packing), bases["llama"], training={"packing": packing})
        recorder = Recorder()
        train(config, callbacks=[recorder])
        losses.append(recorder.losses)
    assert len(losses[0]) == 2
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)


def audited(config: FinetuneConfig, base: Path) -> tuple[float, float]:
    """Train, then the harness's log-likelihood of one pair with and without the adapter."""
    out = train(config).output_dir
    lm = load_model(ModelSource(path=str(base), adapter=str(out), device="cpu"))
    pairs = [("headline: team won\nsummary:", " team won")]
    (adapted,) = lm.loglikelihood(pairs)
    with lm.adapter_disabled():
        (plain,) = lm.loglikelihood(pairs)
    return adapted[0], plain[0]


@pytest.mark.parametrize(
    ("arch", "lora"),
    [
        ("llama", {"use_dora": True}),
        ("gpt2", {"use_dora": True}),  # Conv1D layers (fan_in_fan_out)
        ("llama", {"use_rslora": True}),
        ("llama", {"modules_to_save": ["norm"]}),
        ("llama", {"target_modules": {"regex": r"model\.layers\.1\..*_proj"}}),
    ],
)
def test_adapter_options_train_and_the_harness_scores_them(
    bases: dict[str, Path], tmp_path: Path, arch: str, lora: dict[str, Any]
) -> None:
    config = config_at(tmp_path, bases[arch], lora=lora)
    adapted, plain = audited(config, bases[arch])
    assert math.isfinite(adapted) and math.isfinite(plain)
    assert adapted != plain
    out = config.output_dir
    saved = json.loads((out / "adapter_config.json").read_text())
    weights = load_file(out / "adapter_model.safetensors")
    assert saved["use_dora"] == bool(lora.get("use_dora"))
    assert saved["use_rslora"] == bool(lora.get("use_rslora"))
    assert {t.dtype for t in weights.values()} == {torch.float32}
    if "modules_to_save" in lora:
        assert "norm" in saved["modules_to_save"]
        assert any("norm" in k and "lora" not in k for k in weights)
    if "target_modules" in lora:
        assert saved["target_modules"] == lora["target_modules"]["regex"]
        assert weights and all(".layers.1." in k for k in weights)
    manifest = json.loads((out / "manifest.json").read_text())
    for key, value in lora.items():
        assert manifest["config"]["lora"][key] == value


def test_an_unknown_module_to_save_is_a_located_error(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    config = config_at(tmp_path, bases["llama"], lora={"modules_to_save": ["norm", "head"]})
    with pytest.raises(UserError) as exc:
        built(config)
    where = at(config, "- head", len("- "))
    message = NO_SUCH_MODULE.format(name="head")
    assert exc.value.messages == [f"{where}: lora.modules_to_save[1]: {message}"]


def test_a_regex_matching_no_module_is_a_located_error(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    config = config_at(tmp_path, bases["llama"], lora={"target_modules": {"regex": "nothing.*"}})
    with pytest.raises(UserError) as exc:
        built(config)
    (message,) = exc.value.messages
    where = at(config, "regex: nothing.*")
    assert message.startswith(f"{where}: lora.target_modules: Target modules nothing.* not found")


def test_a_bfloat16_base_trains_under_bf16_with_float32_masters(
    bases: dict[str, Path], tmp_path: Path
) -> None:
    lora = {"modules_to_save": ["norm"], "use_dora": True}
    half = {"path": str(bases["llama"]), "dtype": "bfloat16"}  # base_model.dtype loads it so
    config = config_at(
        tmp_path, bases["llama"], base_model=half, training={"precision": "bf16"}, lora=lora
    )
    recorder = Recorder()
    result = train(config, callbacks=[recorder])
    assert all(math.isfinite(x) for x in recorder.losses) and len(recorder.losses) == 2
    if not torch.accelerator.is_available():
        assert recorder.autocast == {torch.bfloat16}  # mixed precision on the CPU
    assert {g.dtype for g in recorder.grads[0].values()} == {torch.float32}
    weights = load_file(result.output_dir / "adapter_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}
    # without autocast the float32 copy of `norm` cannot feed the bfloat16 head
    config = config_at(tmp_path / "fp32", bases["llama"], base_model=half, lora=lora)
    with pytest.raises(UserError) as exc:
        built(config)
    assert exc.value.messages == [
        f"{at(config, '- norm')}: lora.modules_to_save: " + HALF_BASE_SAVED.format(dtype="bfloat16")
    ]


@pytest.fixture(scope="module")
def llama64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose linear layers are multiples of 64 wide: bitsandbytes 0.50's CPU
    path for evaluation (AVX512-BF16 repacking, in eval mode) reshapes each weight into
    blocks of 64 and fails on the 32-wide tiny Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny_models import build_tokenizer

    folder = tmp_path_factory.mktemp("llama64")
    tok: Any = build_tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


QUANTIZATION = {
    4: {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"},
    8: {"bits": 8},
}


@pytest.fixture(params=[4, 8], ids=["4bit", "8bit"])
def kbit(request: Any, llama64: Path) -> dict[str, Any]:
    """The Llama above as a `base_model` section that loads it quantized (QLoRA's NF4
    with double quantization and bfloat16 compute, or LLM.int8); skips where bitsandbytes
    cannot quantize on this machine."""
    pytest.importorskip("bitsandbytes")
    section = {"path": str(llama64), "quantization": QUANTIZATION[request.param]}
    try:
        model = language_model.load_for_training(
            ModelSource(path=str(llama64), quantization=QUANTIZATION[request.param])
        )[0]
    except Exception as exc:  # noqa: BLE001 - any failure means: not on this machine
        pytest.skip(f"bitsandbytes cannot quantize here: {str(exc)[:200]}")
    if not options.is_quantized(model):
        pytest.skip("bitsandbytes loaded the model unquantized")
    return section


def test_a_quantized_base_is_prepared_and_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kbit: dict[str, Any]
) -> None:
    import peft

    calls = []
    real = peft.prepare_model_for_kbit_training

    def spy(model: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", spy)
    config = config_at(
        tmp_path,
        Path(kbit["path"]),
        base_model=kbit,
        training={"gradient_checkpointing": True, "precision": "bf16"},
    )
    recorder = Recorder()
    result = train(config, callbacks=[recorder])
    recorded = result.manifest["config"]["base_model"]["quantization"]
    assert recorded.items() >= kbit["quantization"].items()  # set values, and defaults
    assert calls == [
        {
            "use_gradient_checkpointing": True,
            "gradient_checkpointing_kwargs": {"use_reentrant": False},
        }
    ]
    assert len(recorder.losses) == 2 and all(math.isfinite(x) for x in recorder.losses)
    weights = load_file(result.output_dir / "adapter_model.safetensors")
    lora_b = [t for k, t in weights.items() if "lora_B" in k]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at 0: it moved
    # the harness audits the adapter on the base loaded as it was trained (quantized)
    source = ModelSource(
        path=kbit["path"], adapter=str(result.output_dir), quantization=kbit["quantization"]
    )
    lm = load_model(source)
    (tuned,) = lm.loglikelihood([("headline: market rose\nsummary:", " market rose")])
    with lm.adapter_disabled():
        (base,) = lm.loglikelihood([("headline: market rose\nsummary:", " market rose")])
    assert math.isfinite(tuned[0]) and tuned[0] != base[0]
    assert lm.loading["quantization"] == kbit["quantization"]


def test_ewc_on_a_quantized_base_is_a_located_error(tmp_path: Path, kbit: dict[str, Any]) -> None:
    write_jsonl(tmp_path / "original.jsonl", [{"text": "the film was good."}] * 4)
    config = config_at(
        tmp_path,
        Path(kbit["path"]),
        base_model=kbit,
        anti_forgetting={"ewc": {"weight": 1.0, "data": ["original.jsonl"]}},
    )
    with pytest.raises(UserError) as exc:
        built(config)
    assert exc.value.messages == [
        f"{at(config, 'weight: 1.0')}: anti_forgetting.ewc: {EWC_QUANTIZED}"
    ]
