"""The CI recipes of docs/ci/ (issue 21): their structure, and their shell steps run here.

Both files are parsed; the steps the recipe promises must exist (caches keyed by the
suite's and the model's digests, the gate, JUnit, the Markdown summary, the HTML report
as an artifact) and nothing may swallow the gate's exit code. Then the steps' own shell
commands run in a workspace laid out as the recipe expects (the suite template and its
data, a tiny model for the base, a tiny adapter, a released run as the baseline), with
the recipe's own environment: a passing gate exits 0, a failing one exits 1 and still
leaves its JUnit file and job summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.results.store import load_results

ROOT = Path(__file__).parents[2]
GITHUB = ROOT / "docs" / "ci" / "github-actions.yml"
GITLAB = ROOT / "docs" / "ci" / "gitlab-ci.yml"
SWALLOWS = re.compile(r"\|\|\s*(true|:|exit 0)|set \+e|;\s*true\b|exit 0")


def code(script: str) -> str:
    """A shell script without its comment lines."""
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))


def github_steps() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    workflow = yaml.safe_load(GITHUB.read_text(encoding="utf-8"))
    (job,) = workflow["jobs"].values()
    return workflow, job["steps"]


def step(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [s for s in steps if s.get("name") == name]
    return found


def test_github_workflow_structure() -> None:
    workflow, steps = github_steps()
    assert workflow.get("on") or workflow.get(True)  # type: ignore[call-overload]  # YAML 1.1: on is True
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    for action in (
        "actions/checkout",
        "actions/cache/restore",
        "actions/cache/save",
        "actions/upload-artifact",
        "mikepenz/action-junit-report",
    ):
        assert action in uses, action
    # the response cache: keyed by the suite's, the model's and the adapter's digests
    names = [str(s.get("name")) for s in steps]
    restore = step(steps, "Restore the response cache")["with"]
    save = step(steps, "Save the response cache")["with"]
    for key in (restore["key"], save["key"]):
        for digest in ("suite", "model", "adapter"):
            assert f"steps.digests.outputs.{digest}" in key
    assert restore["key"] == save["key"] and restore["path"] == "${{ env.HARNESS_CACHE_DIR }}"
    assert names.index("Digests") < names.index("Restore the response cache") < names.index("Gate")
    model, saved = step(steps, "Restore the model"), step(steps, "Save the model")
    assert "BASE_MODEL_REVISION" in model["with"]["key"]
    assert model["with"] == saved["with"] and model["with"]["path"] == "${{ env.MODEL_DIR }}"
    # saved right after the fetch: a failing gate later in the job must not lose it
    assert names.index("Fetch the model") + 1 == names.index("Save the model")
    assert (
        saved["if"]
        == step(steps, "Fetch the model")["if"]
        == ("steps.model-cache.outputs.cache-hit != 'true'")
    )
    # the gate's exit code gates the job: nothing swallows it, and what reports it runs anyway
    gate = step(steps, "Gate")
    assert "harness run" in gate["run"] and "--baseline-results" in gate["run"]
    assert "if" not in gate and not gate.get("continue-on-error", False)
    assert not SWALLOWS.search(code(gate["run"]))
    assert code(gate["run"]).strip().startswith("harness run")  # one command: its status
    assert workflow["jobs"]["gate"]["defaults"]["run"]["shell"] == "bash"
    for name in names[names.index("Gate") + 1 :]:
        assert step(steps, name)["if"] == "always()", name
    assert "$GITHUB_STEP_SUMMARY" in step(steps, "Job summary")["run"]
    assert step(steps, "Publish JUnit")["with"]["report_paths"].endswith("/junit.xml")
    assert "/report.html" in step(steps, "Upload the report")["with"]["path"]
    assert workflow["permissions"]["checks"] == "write"


def test_gitlab_job_structure() -> None:
    (job,) = yaml.safe_load(GITLAB.read_text(encoding="utf-8")).values()
    model_cache, responses = job["cache"]
    assert "$BASE_MODEL_REVISION" in model_cache["key"]
    assert "models/base/" in model_cache["paths"]
    assert model_cache["when"] == "always"  # saved even by a job whose gate failed
    assert job["variables"]["SUITE"] in responses["key"]["files"]  # the suite's digest
    assert "$BASE_MODEL_REVISION" in responses["key"]["prefix"]  # the model's
    assert responses["when"] == "always" and ".cache/harness/" in responses["paths"]
    (gate,) = job["script"]
    assert code(gate).strip().startswith("HF_HUB_OFFLINE=1 harness run")
    assert not SWALLOWS.search(code(gate))
    assert not job.get("allow_failure", False)
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "reports/gate/junit.xml"
    assert "reports/gate/" in job["artifacts"]["paths"]


# --- the steps' shell commands, run here -------------------------------------------------

FAILING_GATE = "  - {metric: general_lm.perplexity, max: 1.0}\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    """The repository layout the recipe expects, with the released run in place."""
    from harness.cli.main import main
    from tests.report.stored_run import build_adapter

    work = tmp_path_factory.mktemp("ci-workspace")
    templates = work / "suites" / "templates"
    templates.mkdir(parents=True)
    shutil.copy(ROOT / "suites" / "templates" / "ci-regression.yaml", templates)
    shutil.copytree(ROOT / "suites" / "templates" / "data", templates / "data")
    failing = (
        (templates / "ci-regression.yaml")
        .read_text()
        .replace("\ngates:\n", "\ngates:\n" + FAILING_GATE, 1)
    )
    assert FAILING_GATE in failing
    (templates / "ci-failing.yaml").write_text(failing)
    shutil.copytree(tiny_gpt2, work / "models" / "base")
    adapter = build_adapter(work / "models" / "base", work / "checkpoints" / "candidate")
    for extra in ("manifest.json", "history.jsonl"):  # a plain peft adapter
        (adapter / extra).unlink()
    suite = str(templates / "ci-regression.yaml")
    released = ["--model", str(work / "models" / "base"), "--adapter", str(adapter)]
    out = str(work / "reports" / "released")
    with pytest.MonkeyPatch.context() as patch:  # the recipe's response cache
        patch.setenv("HARNESS_CACHE_DIR", str(work / ".cache" / "harness"))
        # the first released run (docs/gates.md): no baseline yet, exit 0 with warnings
        assert main(["run", suite, *released, "--out", out, "--no-progress"]) == 0
    return work


def recipe_env(work: Path, values: dict[str, str], **more: str) -> dict[str, str]:
    """The recipe's environment with GitHub's expressions resolved for ``work``, the
    venv's `harness` first on PATH and this tree importable."""
    env = dict(os.environ)
    for key, value in values.items():
        env[key] = value.replace("${{ github.workspace }}", str(work)).replace(
            "$CI_PROJECT_DIR", str(work)
        )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(more)
    return env


def bash(script: str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``script`` as GitHub's `shell: bash` runs it (bash -eo pipefail)."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


@pytest.mark.slow
def test_github_steps_run_and_the_exit_code_gates_the_job(workspace: Path, tmp_path: Path) -> None:
    workflow, steps = github_steps()
    # Digests: stable, and the model's follows its files
    github_output = tmp_path / "github-output"
    env = recipe_env(workspace, workflow["env"], GITHUB_OUTPUT=str(github_output))
    for _ in range(2):
        done = bash(step(steps, "Digests")["run"], workspace, env)
        assert done.returncode == 0, done.stderr
    first, second = github_output.read_text().splitlines()[:3], outputs(github_output)
    assert dict(line.split("=", 1) for line in first) == second
    assert set(second) == {"suite", "model", "adapter"}
    assert all(re.fullmatch(r"[0-9a-f]{16}", v) for v in second.values())

    gate, summary = step(steps, "Gate"), step(steps, "Job summary")
    for suite, expected in (("ci-regression.yaml", 0), ("ci-failing.yaml", 1)):
        step_summary = tmp_path / f"summary-{expected}.md"
        out = workspace / "reports" / "gate"
        shutil.rmtree(out, ignore_errors=True)
        env = recipe_env(
            workspace,
            {**workflow["env"], **gate.get("env", {})},
            SUITE=f"suites/templates/{suite}",
            GITHUB_STEP_SUMMARY=str(step_summary),
        )
        done = bash(gate["run"], workspace, env)
        assert done.returncode == expected, done.stderr[-2000:]
        for name in ("junit.xml", "summary.md", "report.html", "results.json"):
            assert (out / name).is_file(), name
        assert bash(summary["run"], workspace, env).returncode == 0
        assert step_summary.read_text() == (out / "summary.md").read_text()
        # compared with the released run, every answer from the recipe's response cache
        results = load_results(out / "results.json")
        assert results.baseline and results.baseline.path == "reports/released/results.json"
        cache = results.provenance.cache if results.provenance else None
        assert cache and cache.path and cache.path.startswith(str(workspace / ".cache"))
        assert cache.misses == 0 and cache.hits


@pytest.mark.slow
def test_gitlab_script_runs_and_the_exit_code_gates_the_job(workspace: Path) -> None:
    (job,) = yaml.safe_load(GITLAB.read_text(encoding="utf-8")).values()
    (gate,) = job["script"]
    out = workspace / "reports" / "gate"
    shutil.rmtree(out, ignore_errors=True)
    env = recipe_env(workspace, job["variables"], SUITE="suites/templates/ci-failing.yaml")
    done = bash(gate, workspace, env)
    assert done.returncode == 1, done.stderr[-2000:]
    assert (workspace / job["artifacts"]["reports"]["junit"]).is_file()
    after = bash("\n".join(job["after_script"]), workspace, env)
    assert after.returncode == 0 and after.stdout == (out / "summary.md").read_text()
