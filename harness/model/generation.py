"""Greedy batched generation with stop strings.

Works on token ids and the torch model (the backend in ``harness.model.language_model``
encodes the prompts, cut to the window, and decodes nothing itself). Prompts are sorted
longest-first and left-padded in batches (a causal LM continues from the last position,
so the padding must sit on the left). A batch stops early once every row has produced a
stop string or EOS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.model.distributed import ProcessGroup


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def greedy_generate(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    pad_token: int,
    device: Any,
    stop: Sequence[str] = (),
    batch_size: int = 8,
    advance: Callable[[int], None] | None = None,
    group: ProcessGroup | None = None,
) -> list[str]:
    """Greedy continuations of the ``encoded`` prompts (token ids, already cut to what
    the window keeps); with a process ``group`` each process decodes its share of the
    batches (each batch the same prompts as alone) and all get every text."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    tok = tokenizer
    ends = end_tokens(tok, stop)
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    out: list[str] = [""] * len(encoded)

    # A stop string ending in the newest token lies within its last this many tokens
    # (every token adds a byte at least; 4 more cover a character cut at the tail's start)
    tail = max((len(s.encode()) for s in stop if s), default=0) + 4

    class StopOnStrings(StoppingCriteria):  # type: ignore[misc]
        """Done when a row's new text holds a stop string (or it produced an end token).

        Each step looks at the newest token of the rows still running only: an end
        token ends the row; otherwise the last ``tail`` tokens are decoded and searched,
        and a hit is confirmed on the row's whole new text (decoded once, when it
        stops), so the cheap check can end a row no earlier than the whole one would."""

        def __init__(self, start: int, rows: int) -> None:
            self.start = start
            self.done = [False] * rows

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            newest = input_ids[:, -1].tolist()
            for b, token in enumerate(newest):
                if self.done[b]:
                    continue
                if token in ends or (stop and self._holds_stop(input_ids[b])):
                    self.done[b] = True
            return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

        def _holds_stop(self, row: Any) -> bool:
            recent = tok.decode(
                row[max(self.start, len(row) - tail) :].tolist(), skip_special_tokens=True
            )
            if not any(s and s in recent for s in stop):
                return False
            text = tok.decode(row[self.start :].tolist(), skip_special_tokens=True)
            return any(s and s in text for s in stop)

    with torch.inference_mode():
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        for _, chunk in group.mine(batches) if group is not None else enumerate(batches):
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_token, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, i in enumerate(chunk):
                row = encoded[i]
                ids[b, width - len(row) :] = torch.tensor(row, dtype=torch.long)
                mask[b, width - len(row) :] = 1
            criteria = (
                StoppingCriteriaList([StopOnStrings(width, len(chunk))]) if stop or ends else None
            )
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad_token,
                stopping_criteria=criteria,
            )
            for b, i in enumerate(chunk):
                new = gen[b, width:].tolist()
                cut = [k for k, t in enumerate(new) if t in ends]
                if cut:
                    new = new[: cut[0]]
                text = tok.decode(new, skip_special_tokens=True)
                out[i] = cut_at_stop(text, stop)
            if advance is not None:
                advance(len(chunk))
    if group is not None:
        mine = {i for _, chunk in group.mine(batches) for i in chunk}
        for i, text in group.gather([(i, out[i]) for i in sorted(mine)]):
            out[i] = text
    return out


def end_tokens(tokenizer: Any, stop: Sequence[str]) -> set[int]:
    """Token ids that end a generation: EOS, and each stop string that is one special
    token (a chat template's end-of-turn marker such as ``<|eot_id|>``, which decoding
    drops, so it is matched as a token rather than as text)."""
    ends = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    special |= set(getattr(tokenizer, "get_added_vocab", dict)() or {})
    for text in stop:
        if text in special:
            ids = tokenizer.convert_tokens_to_ids([text])
            if ids and ids[0] is not None and ids[0] != getattr(tokenizer, "unk_token_id", None):
                ends.add(int(ids[0]))
    return ends
