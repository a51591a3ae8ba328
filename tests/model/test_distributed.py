"""Scale-out (docs/scale-out.md): the model's work shared among processes.

Unit tests run two "processes" as two threads of one test, exchanging their shares
through a barrier exactly as ``all_gather`` / ``broadcast`` do; the end-to-end test
starts two real processes with ``accelerate launch`` and compares results.json with a
single-process run of the same suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.model import distributed
from harness.model.api import ScoringModel
from harness.model.cache import ResponseCache
from harness.model.caching import CachingModel
from harness.model.distributed import REQUESTS_DIFFER, ProcessGroup
from harness.model.factory import unwrapped
from harness.model.language_model import LanguageModel, ModelSource, load_model
from harness.model.scoring import _PACKING


class ThreadGroup(ProcessGroup):
    """A ProcessGroup whose members are threads: gather and broadcast meet at a barrier."""

    def __init__(self, index: int, size: int, board: dict[str, Any]) -> None:
        super().__init__(index=index, size=size, device="cpu", state=None)
        self.board = board

    def _exchange(self, item: Any) -> list[Any]:
        barrier: threading.Barrier = self.board["barrier"]
        self.board.setdefault("slots", {})[self.index] = item
        barrier.wait()
        out = [self.board["slots"][i] for i in range(self.size)]
        barrier.wait()  # nobody writes the next round before everyone has read this one
        return out

    def gather(self, items: list[Any]) -> list[Any]:
        return [x for part in self._exchange(list(items)) for x in part]

    def broadcast(self, obj: Any) -> Any:
        return self._exchange(obj)[0]

    def barrier(self) -> None:
        self._exchange(None)


def run_as_group(size: int, fn: Callable[[ProcessGroup], Any]) -> list[Any]:
    """``fn(group)`` in ``size`` threads at once; each thread's return value."""
    board: dict[str, Any] = {"barrier": threading.Barrier(size)}
    with ThreadPoolExecutor(size) as pool:
        futures = [pool.submit(fn, ThreadGroup(i, size, board)) for i in range(size)]
        return [f.result(timeout=120) for f in futures]


class CountingModel:
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.batches: list[int] = []

    def __call__(self, input_ids: Any, **kwargs: Any) -> Any:
        self.batches.append(int(input_ids.shape[0]))
        return self.model(input_ids=input_ids, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


PAIRS = [
    (f"Review: {w} {n}.\nSentiment:", c)
    for w in ("great", "awful", "boring fun", "loved every minute of the")
    for n in ("movie", "plot twist", "actor")
    for c in (" positive", " negative")
]
TEXTS = [
    f"The {n} was {w}, said the critic." * k
    for k, (n, w) in enumerate(
        [("movie", "good"), ("film", "bad"), ("story", "long"), ("plot", "odd"), ("cast", "fine")],
        1,
    )
]


@pytest.fixture(scope="module")
def lm(tiny_gpt2: Path) -> LanguageModel:
    model = load_model(ModelSource(path=str(tiny_gpt2)))
    # loaded now: the members below are threads sharing these weights, and transformers'
    # loading is not thread-safe (real members are processes, each loading its own)
    assert model.model is not None and model.tokenizer is not None
    return model


def view(
    lm: LanguageModel, group: ProcessGroup | None, cache: ResponseCache | None = None
) -> ScoringModel:
    """A fresh model on ``lm``'s weights, composed as harness.model.factory.open_model
    composes it: the group given to the backend, the cache (and the group's shared
    lookup) wrapped around it."""
    backend = LanguageModel(**{**vars(lm), "group": group})
    if cache is None and group is None:
        return backend
    return CachingModel(backend, cache=cache, group=group)


def alone_and_shared(lm: LanguageModel, call: Callable[[ScoringModel], Any]) -> tuple[Any, Any]:
    """``call`` run by one process, then by two sharing the work (fresh model views)."""
    alone = call(view(lm, None))

    def member(group: ProcessGroup) -> Any:
        return call(view(lm, group))

    shared = run_as_group(2, member)
    return alone, shared


def test_mine_deals_items_round_robin() -> None:
    group = ProcessGroup(index=1, size=3, device="cpu", state=None)
    assert group.mine(["a", "b", "c", "d", "e"]) == [(1, "b"), (4, "e")]


def test_every_scoring_call_gives_the_single_process_answers(lm: LanguageModel) -> None:
    def call(model: ScoringModel) -> Any:
        return (
            model.loglikelihood(PAIRS, batch_size=3),
            model.rolling_loglikelihood(TEXTS, batch_size=2),
            model.generate([p for p, _ in PAIRS[::4]], max_new_tokens=4, batch_size=2),
        )

    alone, shared = alone_and_shared(lm, call)
    assert shared[0] == alone and shared[1] == alone  # exactly, floats included


def test_the_batches_are_shared_not_repeated(lm: LanguageModel) -> None:
    counters: list[CountingModel] = []

    def call(model: ScoringModel) -> Any:
        backend = unwrapped(model)
        assert isinstance(backend, LanguageModel)
        backend.model = CountingModel(backend.model)
        # packing known to work: the main process's one-off check batches are not counted
        _PACKING[backend.model] = True
        counters.append(backend.model)
        return model.loglikelihood(PAIRS, batch_size=3)

    alone_and_shared(lm, call)
    single, first, second = counters  # the single run, then the two members
    assert sorted(first.batches + second.batches) == sorted(single.batches)
    assert len(first.batches) == pytest.approx(len(single.batches) / 2, abs=1)
    assert len(single.batches) >= 4  # the split is not vacuous


def test_only_the_main_process_holds_the_cache(lm: LanguageModel, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    warm = CachingModel(view(lm, None), cache=ResponseCache(path))
    expected = warm.loglikelihood(PAIRS[:6], batch_size=3)  # these answers are cached
    assert warm.cache is not None
    warm.cache.close()
    caches: list[ResponseCache] = []

    def member(group: ProcessGroup) -> Any:
        cache = None
        if group.is_main:  # sqlite connections stay in the thread that opened them
            cache = ResponseCache(path)
            caches.append(cache)
        out: Any = view(lm, group, cache).loglikelihood(PAIRS, batch_size=3)
        if cache is not None:
            out = (out, cache.stats()["hits"], cache.count())
            cache.close()
        return out

    (answers, hits, stored), other = run_as_group(2, member)
    assert answers == other and answers[:6] == expected
    assert (hits, stored, len(caches)) == (6, len(set(PAIRS)), 1)


def test_processes_that_disagree_on_the_requests_stop_together(lm: LanguageModel) -> None:
    def member(group: ProcessGroup) -> Any:
        model = view(lm, group)
        with pytest.raises(RuntimeError) as caught:
            model.loglikelihood(PAIRS[group.index :], batch_size=3)
        return str(caught.value)

    messages = run_as_group(2, member)
    assert messages[0] == messages[1]
    prefix, _, suffix = REQUESTS_DIFFER.format(kind="loglikelihood", digests="*").partition("*")
    assert messages[0].startswith(prefix) and messages[0].endswith(suffix)


def test_alone_nothing_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launched_size() == 1 and distributed.join() is None
    assert distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert (distributed.launched_size(), distributed.launched_rank()) == (4, 3)
    assert not distributed.is_main()  # known from the environment, before joining


def test_a_single_process_run_starts_no_process_group(tmp_path: Path, tiny_gpt2: Path) -> None:
    """Run directly, nothing distributed is set up: no group joined, no accelerate state,
    no torch.distributed backend (transformers itself may import accelerate, which is
    harmless; creating its state would bind the process to a launcher)."""
    from tests.cli.test_cli import write_suite

    suite = write_suite(tmp_path, tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0.0}\n")
    code = (
        "import sys, torch\nfrom harness.cli.main import main\nfrom harness.model import distributed\n"
        f"rc = main(['run', {str(suite)!r}, '--out', {str(tmp_path / 'out')!r}, "
        "'--no-progress', '--no-cache', '--limit', '2'])\n"
        "state = sys.modules.get('accelerate.state')\n"
        "shared = bool(state and state.PartialState._shared_state)\n"
        "print(rc, distributed.current() is None, shared, torch.distributed.is_initialized())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.stdout.split() == ["0", "True", "False", "False"], done.stderr[-2000:]


# --- two real processes ----------------------------------------------------------------

GATES = "  - {metric: sentiment.accuracy, min: 0.0}\n  - {metric: lm.perplexity, max: 1e9}\n"
AUDITS = """audits:
  forgetting:
    tasks: [sentiment, lm]
  explain:
    task: sentiment
    methods: [lime]
    samples: 2
    max_evals: 10
"""
LAUNCH = [
    "launch",
    "--multi_gpu",  # torchrun under the hood: the launcher that starts N processes
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def offline_env(cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",  # CPU processes even on a GPU machine
        ACCELERATE_USE_CPU="true",
        HARNESS_CACHE_DIR=str(cache_dir),  # a fresh cache: every answer is computed
        HF_HOME=str(cache_dir / "hf"),  # no accelerate config file is read
    )
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_fields(results: dict[str, Any]) -> dict[str, Any]:
    from tests.model.test_cache import comparable

    out = comparable(results)
    out["provenance"].pop("processes")  # records the run setup (docs/results.md)
    return out


def launches(folder: Path) -> dict[str, list[str]]:
    """The accelerate commands that start two processes: torchrun's, and the CPU one of
    the docs (``--cpu --num_processes 2``), which starts them through mpirun (MPICH, a
    dev dependency installed from PyPI)."""
    hosts = folder / "hosts"
    hosts.write_text("localhost:2\n")  # MPICH's hostfile: this machine, two slots
    cpu = ["launch", "--cpu", "--num_processes", "2", "--mpirun_hostfile", str(hosts)]
    return {"torchrun": LAUNCH, "mpirun": cpu}


@pytest.mark.slow
def test_two_processes_write_the_single_process_results(tmp_path: Path, tiny_gpt2: Path) -> None:
    from tests.cli.test_cli import write_suite
    from tests.report.stored_run import build_adapter

    bin_dir = str(Path(sys.executable).parent)  # accelerate, and mpirun from the mpich wheel
    accelerate = shutil.which("accelerate", path=bin_dir)
    assert accelerate is not None and shutil.which("mpirun", path=bin_dir) is not None
    adapter = build_adapter(tiny_gpt2, tmp_path / "adapter")
    suite = write_suite(tmp_path, tiny_gpt2, GATES, AUDITS)
    args = ["run", str(suite), "--adapter", str(adapter), "--batch-size", "2", "--no-progress"]
    single = subprocess.run(
        [sys.executable, "-m", "harness", *args, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=offline_env(tmp_path / "cache-one"),
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert one["provenance"]["processes"] == 1
    for name, launch in launches(tmp_path).items():
        port = ["--main_process_port", str(free_port())]  # parallel test workers do not collide
        env = offline_env(tmp_path / f"cache-{name}")
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        shared = subprocess.run(
            [accelerate, *launch, *port, "-m", "harness", *args, "--out", str(tmp_path / name)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert shared.returncode == 0, (name, shared.stderr[-3000:])
        two = json.loads((tmp_path / name / "results.json").read_text())
        assert two["provenance"]["processes"] == 2, name
        assert two["audits"]["forgetting"] and two["audits"]["explain"]
        assert setup_fields(one) == setup_fields(two), name  # floats included, to the last bit
        assert shared.stderr.count("verdict: PASS") == 1, name  # printed by the main process
