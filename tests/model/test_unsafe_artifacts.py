"""Unsafe artifacts (docs/security.md): pickle weights only on request, remote code
never implicitly, suites and data cannot steer writes outside the output folder, and
symlinks in the output folder are replaced, not written through."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.model.language_model import OPT_IN_TRAINING, ModelSource, load_for_training, load_model
from tests.cli.test_cli import write_suite
from tests.report.stored_run import build_adapter

pytestmark = pytest.mark.slow

GATES = "  - {metric: sentiment.accuracy, min: 0.0}\n"
OUTPUTS = {"results.json", "report.html", "junit.xml", "summary.md", "digests.json"}


def pickled_copy(model: Path, folder: Path, name: str) -> Path:
    """A copy of a model folder whose weights are only a pickle file ``name``."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(model, folder)
    weights = next(folder.glob("*.safetensors"))
    torch.save(load_file(weights), folder / name)
    weights.unlink()
    return folder


def run(suite: Path, out: Path, *args: str) -> int:
    return main(["run", str(suite), "--out", str(out), "--no-progress", *args])


# --- pickle ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_only_model_is_refused(
    name: str, tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = pickled_copy(tiny_gpt2, tmp_path / "model", name)
    suite = write_suite(tmp_path, model, GATES)
    assert run(suite, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"has only pickle weights ({name})" in err and "--allow-pickle" in err
    assert not (tmp_path / "out").exists()


def test_pickle_model_loads_with_allow_pickle(tiny_gpt2: Path, tmp_path: Path) -> None:
    model = pickled_copy(tiny_gpt2, tmp_path / "model", "pytorch_model.bin")
    suite = write_suite(tmp_path, model, GATES)
    assert run(suite, tmp_path / "out", "--allow-pickle") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    files = [f["name"] for f in results["provenance"]["model"]["files"]]
    assert "pytorch_model.bin" in files  # fingerprinted, so verify covers it


def test_pickle_only_adapter_is_refused_unless_allowed(
    tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_adapter(tiny_gpt2, tmp_path / "built")
    adapter = pickled_copy(built, tmp_path / "adapter", "adapter_model.bin")
    suite = write_suite(tmp_path, tiny_gpt2, GATES)
    assert run(suite, tmp_path / "out", "--adapter", str(adapter)) == 2
    err = capsys.readouterr().err
    assert f"adapter '{adapter}' has only pickle weights (adapter_model.bin)" in err
    assert "--allow-pickle" in err
    assert run(suite, tmp_path / "out", "--adapter", str(adapter), "--allow-pickle") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [f["name"] for f in results["provenance"]["adapter"]["files"]] == [
        "adapter_config.json",
        "adapter_model.bin",
    ]


def test_finetune_refuses_a_pickle_base_and_names_the_config_switch(
    tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune.cli import main as finetune_main

    base = pickled_copy(tiny_gpt2, tmp_path / "base", "pytorch_model.bin")
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"q{i}:", "completion": f" a{i}"}) + "\n" for i in range(8))
    )
    config = tmp_path / "ft.yaml"
    config.write_text(
        f"schema_version: 1\nname: p\nbase_model: {{path: {base}}}\n"
        f"data: {{train: [{data}], val_split: 0.25}}\n"
        "training: {max_steps: 1, batch_size: 2, max_length: 16}\n"
    )
    assert finetune_main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "has only pickle weights (pytorch_model.bin)" in err and OPT_IN_TRAINING in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1


# --- remote code -------------------------------------------------------------------------


def record_kwargs(monkeypatch: pytest.MonkeyPatch, owner: Any, calls: list[dict[str, Any]]) -> None:
    original = owner.from_pretrained.__func__

    def recording(cls: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append({"owner": cls.__name__, **kwargs})
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(owner, "from_pretrained", classmethod(recording))


def test_remote_code_is_never_enabled_implicitly(
    tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = build_adapter(tiny_gpt2, tmp_path / "adapter")
    calls: list[dict[str, Any]] = []
    for owner in (AutoModelForCausalLM, AutoTokenizer, PeftModel):
        record_kwargs(monkeypatch, owner, calls)
    lm = load_model(ModelSource(path=str(tiny_gpt2), adapter=str(adapter)))
    assert lm.model is not None and lm.tokenizer is not None  # they load on first use
    load_for_training(ModelSource(path=str(tiny_gpt2)))
    owners = [c["owner"] for c in calls]
    assert owners.count("AutoModelForCausalLM") == 2 and owners.count("AutoTokenizer") == 2
    assert "PeftModel" in owners
    # transformers/peft: absent means False; we always pass it explicitly to the Auto classes
    assert all(c.get("trust_remote_code", False) is False for c in calls), calls
    assert all("trust_remote_code" in c for c in calls if c["owner"].startswith("Auto"))


def test_model_shipping_code_is_refused_and_its_code_never_runs(
    tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    model = tmp_path / "model"
    shutil.copytree(tiny_gpt2, model)
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "evil-arch"
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModelForCausalLM": "evil.Model"}
    (model / "config.json").write_text(json.dumps(config))
    suite = write_suite(tmp_path, model, GATES)
    assert run(suite, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"model '{model}': cannot load" in err and "Traceback" not in err
    assert not marker.exists()


# --- where a run writes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "../../evil"),
        ("id", "a/b"),
        ("id", ".."),
        ("id", "C:\\\\evil"),
        ("name", "../escape"),
        ("name", "x/y"),
    ],
)
def test_names_with_path_parts_are_rejected(
    field: str, value: str, tiny_gpt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, GATES)
    text = suite.read_text()
    text = (
        text.replace("id: sentiment", f'id: "{value}"')
        if field == "id"
        else text.replace("name: e2e", f'name: "{value}"')
    )
    suite.write_text(
        text.replace("{metric: sentiment.accuracy, min: 0.0}", "{metric: lm.perplexity, max: 1e9}")
    )
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    where = "tasks[0].id" if field == "id" else "name"
    assert f"{where}: must start with a letter or '_'" in err, err


def tree(root: Path, skip: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parents
    }


def test_hostile_data_values_never_name_a_file(tiny_gpt2: Path, tmp_path: Path) -> None:
    """Example ids, groups and texts go into results.json; no file is named after them."""
    root = tmp_path / "work"
    suite = write_suite(root, tiny_gpt2, GATES)
    rows = [
        {"rid": f"../../../tmp/evil{i}", "text": f"/etc/passwd {i} ../../x", "label": i % 2}
        for i in range(6)
    ]
    (root / "data" / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite.write_text(
        suite.read_text().replace("label: label\n", "label: label\n    id_field: rid\n", 1)
    )
    cache = Path(os.environ["HARNESS_CACHE_DIR"])
    before = tree(tmp_path, cache)
    assert run(suite, root / "out") == 0
    after = tree(tmp_path, cache)
    new = {k for k in after if k not in before or after[k] != before[k]}
    assert new == {f"work/out/{name}" for name in OUTPUTS}
    results = json.loads((root / "out" / "results.json").read_text())
    assert results["tasks"]["sentiment"]["records"][0]["id"] == "../../../tmp/evil0"


# --- symlinks ----------------------------------------------------------------------------


def test_symlinked_outputs_are_replaced_not_followed(tiny_gpt2: Path, tmp_path: Path) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, GATES)
    out = tmp_path / "out"
    out.mkdir()
    victims = {}
    for name in OUTPUTS:
        victim = tmp_path / f"precious-{name}"
        victim.write_text(f"do not overwrite {name}\n")
        (out / name).symlink_to(victim)
        victims[name] = victim
    assert run(suite, out) == 0
    for name, victim in victims.items():
        assert victim.read_text() == f"do not overwrite {name}\n"
        assert not (out / name).is_symlink() and (out / name).is_file()
    # `harness report --out` replaces a link the same way
    target = tmp_path / "precious-report.md"
    link = tmp_path / "rendered.md"
    link.symlink_to(target)
    target.write_text("keep\n")
    assert main(["report", str(out / "results.json"), "--format", "md", "--out", str(link)]) == 0
    assert target.read_text() == "keep\n" and not link.is_symlink()


def test_symlinked_output_folder_is_the_folder_it_names(tiny_gpt2: Path, tmp_path: Path) -> None:
    """--out naming a link to a folder writes into that folder (the user chose the path),
    and the link stays a link; documented in docs/security.md."""
    suite = write_suite(tmp_path, tiny_gpt2, GATES)
    real = tmp_path / "real-out"
    real.mkdir()
    link = tmp_path / "out"
    link.symlink_to(real, target_is_directory=True)
    assert run(suite, link) == 0
    assert link.is_symlink()
    assert {p.name for p in real.iterdir()} == OUTPUTS
