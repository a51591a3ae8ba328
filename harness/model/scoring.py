"""Token-level batched scoring for causal LMs.

Everything here works on token ids; ``harness.model.language_model`` turns text into the rows
scored here. The conventions follow lm-evaluation-harness so that numbers agree with
it: a continuation is scored given its context, the sequence is left-truncated to the
model's window (``(context + continuation)[-(max_length + 1):][:-1]``), and rolling
(perplexity) scoring splits a text into disjoint windows, the first conditioned on a
prefix token.

Rows are sorted longest-first and batched with right padding, so padding never sits
before a scored position, and the first batch is the largest: an out-of-memory shows
up at once rather than at the end of a long run.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from harness.model.distributed import ProcessGroup


@dataclass(frozen=True)
class ScoreRow:
    """One forward pass input and the targets scored at its last positions.

    ``targets`` are scored at the last ``len(targets)`` positions of ``tokens``:
    position ``len(tokens) - len(targets) + j`` predicts ``targets[j]``.
    """

    tokens: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass(frozen=True)
class RowScore:
    """Sum of log-probabilities of the row's targets and whether each was the argmax."""

    logprob: float
    greedy: bool
    n_targets: int


ROLLING_PASS_TOKENS = 1 << 19
"""Rolling windows are scored in passes of at most about this many input tokens, so
the rows of a huge text never all exist at once (a chunk of ordinary texts is one pass)."""


def rolling_windows(
    tokens: Sequence[int], prefix_token: int, max_length: int
) -> Iterator[ScoreRow]:
    """A text's tokens as disjoint scoring windows (lm-eval's rolling scheme), made one
    at a time.

    The first window predicts the first ``max_length`` tokens from ``[prefix] + tokens``;
    each later window predicts the next ``max_length`` tokens with as much preceding
    text as fits as context. Every token is predicted exactly once.
    """
    n = len(tokens)
    if n == 0:
        return
    first = min(max_length, n)
    yield ScoreRow(tokens=(prefix_token, *tokens[: first - 1]), targets=tuple(tokens[:first]))
    done = first
    while done < n:
        width = min(n - done, max_length)
        end = done + width
        # the model input is the max_length tokens just before each predicted token
        start = max(0, end - max_length - 1)
        yield ScoreRow(tokens=tuple(tokens[start : end - 1]), targets=tuple(tokens[done:end]))
        done = end


def rolling_totals(
    indices: Sequence[int],
    tokens_of: Callable[[int], Sequence[int]],
    prefix_token: int,
    max_length: int,
    score: Callable[[list[ScoreRow]], Sequence[tuple[float, int]]],
) -> list[list[Any]]:
    """[sum log-prob, n tokens] of each text ``indices`` names, over its rolling windows.

    Windows are made as they are scored, in passes of about ``ROLLING_PASS_TOKENS``
    input tokens, so a huge text never exists as rows; ``score`` gives (log-prob,
    n targets) per row. Shared by the backends that score windows themselves."""
    totals = dict.fromkeys(indices, 0.0)
    counts = dict.fromkeys(indices, 0)
    rows: list[ScoreRow] = []
    owner: list[int] = []
    pending = 0

    def score_pending() -> None:
        for t, (logprob, n) in zip(owner, score(rows), strict=True):
            totals[t] += logprob
            counts[t] += n
        rows.clear()
        owner.clear()

    for t in indices:
        for window in rolling_windows(tokens_of(t), prefix_token, max_length):
            rows.append(window)
            owner.append(t)
            pending += len(window.tokens)
            if pending >= ROLLING_PASS_TOKENS:
                score_pending()
                pending = 0
    if rows:
        score_pending()
    return [[totals[t], counts[t]] for t in indices]


def windows_for_rolling(
    tokens: Sequence[int], prefix_token: int, max_length: int
) -> list[ScoreRow]:
    """Every window of ``rolling_windows``."""
    return list(rolling_windows(tokens, prefix_token, max_length))


def continuation_row(
    context: Sequence[int], continuation: Sequence[int], max_length: int
) -> ScoreRow:
    """The row scoring ``continuation`` after ``context``, left-truncated to the window."""
    whole = (tuple(context) + tuple(continuation))[-(max_length + 1) :]
    return ScoreRow(tokens=whole[:-1], targets=tuple(continuation))


ProgressFn = Callable[[int], None]


@torch.inference_mode()
def score_rows(
    model: torch.nn.Module,
    rows: Sequence[ScoreRow],
    *,
    batch_size: int,
    pad_token: int,
    device: torch.device,
    advance: ProgressFn | None = None,
    group: ProcessGroup | None = None,
    share_prefixes: bool = True,
) -> list[RowScore]:
    """Score every row; results are in the order of ``rows``.

    Rows with the same input tokens share one forward pass (the choices of a
    classification prompt that are one token each all read the prompt's last
    position). With ``share_prefixes``, inputs that share a prefix (the choices of one
    prompt, the questions after one few-shot prefix) are packed into one sequence, a
    token trie, and each shared prefix is computed once
    (``harness.model.scoring.pack_prefixes``), where the model supports it
    (``packing_supported``). Inputs are sorted longest-first and run
    ``batch_size`` at a time with right padding; log-softmax runs in float32 on the
    scored positions only. ``advance`` is called with the number of rows finished after
    each batch. With a process ``group`` every process scores its share of the batches
    (each batch the same rows as alone) and all of them get every score.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    by_input: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if not row.targets:
            raise ValueError("a score row needs at least one target token")
        by_input.setdefault(row.tokens, []).append(i)
    inputs = sorted(by_input, key=lambda t: -len(t))
    packs: list[Pack] = []
    if share_prefixes:
        packs, inputs = pack_prefixes(inputs)
        supported = packs and packing_supported(
            model, packs[0], by_input, rows, pad_token, device, group=group
        )
        if packs and not supported:
            inputs = sorted(by_input, key=lambda t: -len(t))
            packs = []
    batches: list[tuple[int, list[tuple[int, ...]] | list[Pack]]] = [
        (len(inputs[start]), inputs[start : start + batch_size])
        for start in range(0, len(inputs), batch_size)
    ]
    batches += [(len(chunk[0].tokens), chunk) for chunk in _pack_batches(packs, batch_size)]
    # longest first across both kinds (stable: plain batches before packed ones of a width)
    batches.sort(key=lambda b: -b[0])
    out: list[RowScore | None] = [None] * len(rows)
    for _, (_, chunk) in group.mine(batches) if group is not None else enumerate(batches):
        if chunk and isinstance(chunk[0], Pack):
            done = _score_packed(model, chunk, by_input, rows, out, pad_token, device)  # type: ignore[arg-type]
        else:
            done = _score_plain(model, chunk, by_input, rows, out, pad_token, device)  # type: ignore[arg-type]
        if advance is not None:
            advance(done)
    if group is not None:
        for i, score in group.gather([(i, r) for i, r in enumerate(out) if r is not None]):
            out[i] = score
    return [r for r in out if r is not None]


def _score_plain(
    model: torch.nn.Module,
    chunk: list[tuple[int, ...]],
    by_input: dict[tuple[int, ...], list[int]],
    rows: Sequence[ScoreRow],
    out: list[RowScore | None],
    pad_token: int,
    device: torch.device,
) -> int:
    """One batch of whole inputs (today's path); returns the number of rows scored."""
    width = len(chunk[0])
    ids = torch.full((len(chunk), width), pad_token, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for b, toks in enumerate(chunk):
        ids[b, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        mask[b, : len(toks)] = 1
    # Only positions that predict a target need logits: keep the shortest tail
    # that covers every row's scored positions (absolute [len - n_t, len)).
    first_scored = min(
        len(toks) - max(len(rows[i].targets) for i in by_input[toks]) for toks in chunk
    )
    logits = _last_logits(model, ids.to(device), mask.to(device), width - first_scored)
    picks = []
    for b, toks in enumerate(chunk):
        for i in by_input[toks]:
            lo = len(toks) - len(rows[i].targets) - first_scored
            picks.append((i, b, range(lo, lo + len(rows[i].targets))))
    return _fill_scores(logits, picks, rows, out)


@dataclass(frozen=True)
class Pack:
    """Inputs that share prefixes, as one sequence: the token trie of the inputs laid out
    depth-first (inputs in lexicographic order, each adding the tokens it does not share
    with the one before it). A token attends to its ancestors in the trie only, at the
    position it has in its own input, so each input is computed as if alone while every
    shared prefix (one prompt's context before its choices, a few-shot prefix before
    many questions) is computed once.

    ``paths[k][p]`` is where position ``p`` of ``inputs[k]`` sits in ``tokens``."""

    inputs: tuple[tuple[int, ...], ...]
    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    paths: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, inputs: Sequence[tuple[int, ...]]) -> Pack:
        """The pack of ``inputs`` (distinct; any order)."""
        ordered = sorted(inputs)
        tokens: list[int] = []
        positions: list[int] = []
        paths: list[tuple[int, ...]] = []
        previous: tuple[int, ...] = ()
        for toks in ordered:
            shared = _common_prefix(previous, toks)
            start = len(tokens)
            tokens += toks[shared:]
            positions += range(shared, len(toks))
            base = paths[-1][:shared] if paths else ()
            paths.append(base + tuple(range(start, start + len(toks) - shared)))
            previous = toks
        return cls(tuple(ordered), tuple(tokens), tuple(positions), tuple(paths))

    def allowed(self) -> torch.Tensor:
        """[len, len] bool: which packed token each one attends to (its trie ancestors
        and itself)."""
        n = len(self.tokens)
        allowed = torch.zeros((n, n), dtype=torch.bool)
        for path in self.paths:
            p = torch.tensor(path, dtype=torch.long)
            tril = torch.ones((len(path), len(path)), dtype=torch.bool).tril()
            allowed[p[:, None], p[None, :]] |= tril
        return allowed


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pack_prefixes(
    inputs: Sequence[tuple[int, ...]],
) -> tuple[list[Pack], list[tuple[int, ...]]]:
    """Inputs that share prefixes as packs of two or more (longest first), the rest as
    plain inputs (in their order).

    Inputs are taken in lexicographic order, so those sharing a prefix are neighbours
    across the whole call (the choices of one prompt, the questions after one few-shot
    prefix); an input joins the pack of the one before it when they share at least as
    many tokens as it adds (rolling windows share one token at most: they stay plain),
    and a pack is at most ``max(2 x its longest input, 256)`` tokens long (its attention
    mask grows with the square of it): a larger group becomes several packs.
    Every position of an input is kept in a pack, so any targets fit.
    """
    groups: list[list[tuple[int, ...]]] = []
    length = longest = 0
    previous: tuple[int, ...] = ()
    for toks in sorted(inputs):
        shared = _common_prefix(previous, toks)
        added = len(toks) - shared
        grown = max(longest, len(toks))
        if groups and shared >= added and length + added <= max(2 * grown, 256):
            groups[-1].append(toks)
            length += added
            longest = grown
        else:
            groups.append([toks])
            length = longest = len(toks)
        previous = toks
    packs = [Pack.of(g) for g in groups if len(g) > 1]
    packed = {toks for p in packs for toks in p.inputs}
    packs.sort(key=lambda p: -len(p.tokens))
    return packs, [toks for toks in inputs if toks not in packed]


def _pack_batches(packs: Sequence[Pack], batch_size: int) -> list[list[Pack]]:
    """Consecutive packs (longest first) in batches that run at most as many tokens,
    padding included, as ``batch_size`` of their longest inputs would alone (at least
    one pack a batch): a pack of one context and its four endings counts as about two
    inputs, not four."""
    batches: list[list[Pack]] = []
    longest = 0
    for pack in packs:
        grown = max(longest, max(len(t) for t in pack.inputs))
        if batches and (len(batches[-1]) + 1) * len(batches[-1][0].tokens) <= batch_size * grown:
            batches[-1].append(pack)
            longest = grown
        else:
            batches.append([pack])
            longest = max(len(t) for t in pack.inputs)
    return batches


def _packed_logits(
    model: torch.nn.Module,
    chunk: Sequence[Pack],
    pad_token: int,
    device: torch.device,
    first: int,
) -> torch.Tensor:
    """Logits of each pack's packed positions from ``first`` on."""
    width = max(len(p.tokens) for p in chunk)
    ids = torch.full((len(chunk), width), pad_token, dtype=torch.long)
    pos = torch.zeros((len(chunk), width), dtype=torch.long)
    allowed = torch.eye(width, dtype=torch.bool).repeat(len(chunk), 1, 1)  # padding: itself
    for b, pack in enumerate(chunk):
        n = len(pack.tokens)
        ids[b, :n] = torch.tensor(pack.tokens, dtype=torch.long)
        pos[b, :n] = torch.tensor(pack.positions, dtype=torch.long)
        allowed[b, :n, :n] = pack.allowed()
    dtype = getattr(model, "dtype", torch.float32)
    if not dtype.is_floating_point:
        dtype = torch.float32
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=mask[:, None].to(device),
        position_ids=pos.to(device),
        logits_to_keep=width - first,
        use_cache=False,
    ).logits
    return logits[:, -(width - first) :]


def _score_packed(
    model: torch.nn.Module,
    chunk: Sequence[Pack],
    by_input: dict[tuple[int, ...], list[int]],
    rows: Sequence[ScoreRow],
    out: list[RowScore | None],
    pad_token: int,
    device: torch.device,
) -> int:
    """One batch of packs; returns the number of rows scored."""
    picks: list[tuple[int, int, Sequence[int]]] = []  # (row, batch index, packed positions)
    for b, pack in enumerate(chunk):
        for toks, path in zip(pack.inputs, pack.paths, strict=True):
            for i in by_input[toks]:
                picks.append((i, b, path[len(toks) - len(rows[i].targets) :]))
    first = min(min(where) for _, _, where in picks)
    logits = _packed_logits(model, chunk, pad_token, device, first)
    return _fill_scores(
        logits, [(i, b, [p - first for p in where]) for i, b, where in picks], rows, out
    )


SCORED_LOGITS = 1 << 24
"""Scored positions are turned into log-probabilities about this many logits (one
position is a vocabulary's worth) at a time."""


def _fill_scores(
    logits: torch.Tensor,
    picks: Sequence[tuple[int, int, Sequence[int]]],
    rows: Sequence[ScoreRow],
    out: list[RowScore | None],
) -> int:
    """Score each pick (row index, batch index, kept positions predicting the row's
    targets) from ``logits`` [batch, kept, vocab] into ``out``: log-softmax in float32
    over the picked positions only, for many rows at once (in groups of about
    ``SCORED_LOGITS`` logits); returns the number of rows scored."""
    vocab = logits.shape[-1]
    start = 0
    while start < len(picks):
        stop, count = start, 0
        while stop < len(picks) and (stop == start or count * vocab < SCORED_LOGITS):
            count += len(picks[stop][2])
            stop += 1
        group = picks[start:stop]
        b = [bb for _, bb, where in group for _ in where]
        p = [q for _, _, where in group for q in where]
        targets = [t for i, _, _ in group for t in rows[i].targets]
        dev = logits.device
        logp = torch.log_softmax(
            logits[torch.tensor(b, device=dev), torch.tensor(p, device=dev)].float(), dim=-1
        )
        tgt = torch.tensor(targets, dtype=torch.long, device=dev)
        picked = logp.gather(-1, tgt[:, None]).squeeze(-1)
        missed = logp.argmax(dim=-1) != tgt
        # each row summed on its own, in float32 as lm-eval sums (the same total to the bit)
        counts = [len(where) for _, _, where in group]
        sums = [float(part.sum()) for part in picked.split(counts)]
        greedy = [not bool(part.any()) for part in missed.split(counts)]
        for (i, _, where), total, hit in zip(group, sums, greedy, strict=True):
            out[i] = RowScore(logprob=total, greedy=hit, n_targets=len(where))
        start = stop
    return len(picks)


PACKING_TOLERANCE = 1e-4
"""Packed scores differ from whole-input ones in the last float bits only (the same
sums in another order); a larger relative difference means a model ignores the mask."""

_PACKING: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def packing_supported(
    model: torch.nn.Module,
    pack: Pack,
    by_input: dict[tuple[int, ...], list[int]],
    rows: Sequence[ScoreRow],
    pad_token: int,
    device: torch.device,
    *,
    group: ProcessGroup | None = None,
) -> bool:
    """Whether ``model`` scores a pack as it scores its inputs one by one: checked once
    per model on ``pack`` (a model that rejects a 4D float mask or position ids, or
    ignores them, falls back to whole inputs). In a process ``group`` the main process
    checks and tells the others (every process calls this at the same point)."""
    known = _PACKING.get(model)
    if known is None:
        if group is None:
            known = _check_packing(model, pack, by_input, rows, pad_token, device)
        else:
            mine = None
            if group.is_main:
                mine = _check_packing(model, pack, by_input, rows, pad_token, device)
            known = bool(group.broadcast(mine))
        _PACKING[model] = known
    return known


def _check_packing(
    model: torch.nn.Module,
    pack: Pack,
    by_input: dict[tuple[int, ...], list[int]],
    rows: Sequence[ScoreRow],
    pad_token: int,
    device: torch.device,
) -> bool:
    members = [i for toks in pack.inputs for i in by_input[toks]]
    packed: list[RowScore | None] = [None] * len(rows)
    plain: list[RowScore | None] = [None] * len(rows)
    try:
        _score_packed(model, [pack], by_input, rows, packed, pad_token, device)
    except (TypeError, ValueError, RuntimeError, IndexError):
        return False
    longest_first = sorted(pack.inputs, key=lambda t: -len(t))
    _score_plain(model, longest_first, by_input, rows, plain, pad_token, device)
    return all(
        a is not None
        and b is not None
        and a.greedy == b.greedy
        and abs(a.logprob - b.logprob) <= PACKING_TOLERANCE * max(abs(b.logprob), 1e-6)
        for a, b in ((packed[i], plain[i]) for i in members)
    )


def _last_logits(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, keep: int
) -> torch.Tensor:
    """Logits of the last ``keep`` positions (the LM head is the costliest layer of a
    small model with a large vocabulary, so it runs only where it is needed)."""
    # use_cache=False: scoring never continues a sequence, and building the KV cache
    # costs a third of a small model's forward pass on CPU.
    try:
        logits = model(
            input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False
        ).logits
    except TypeError:  # a model class without logits_to_keep
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return logits[:, -keep:]


def fuse_activations(model: Any) -> int:
    """Swap GPT-2's composite tanh-GELU for PyTorch's fused kernel of the same function.

    ``NewGELUActivation`` computes 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as
    five separate tensor operations; ``torch.nn.functional.gelu(approximate="tanh")``
    is the same formula in one kernel (outputs agree to ~1e-6), and the activation is a
    fifth of a small model's CPU time. Returns the number of modules swapped.
    """
    from transformers.activations import ACT2FN, NewGELUActivation

    swapped = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, ACT2FN["gelu_pytorch_tanh"])
                swapped += 1
    return swapped
