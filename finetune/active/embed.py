"""Hidden states of a pool's prompts: what the diversity strategies cluster.

For each prompt, the model's last-layer hidden state at the prompt's last token: the
vector the output layer turns into the first token of every choice, so the state from
which the model decides. The prompt is tokenized as the harness tokenizes the context
of a choice (``TokenizedModel.encode_pair``: trailing whitespace moves to the choice,
the window keeps the prompt's end), and the model is the one that scores the choices
(base plus adapter when there is one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from harness.model.language_model import LanguageModel


def context_tokens(lm: LanguageModel, prompt: str, continuation: str) -> list[int]:
    """The tokens before a choice's first token, as the harness scores it (left-truncated
    to the model's window)."""
    text, _cut = lm.context_tail(prompt)
    context, _ = lm.encode_pair(text, continuation)
    return context[-lm.max_length :]


def prompt_states(
    lm: LanguageModel,
    prompts: Sequence[str],
    continuation: str,
    *,
    batch_size: int,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(rows x width) float32: the last hidden state at each prompt's last token.

    ``continuation`` is what follows the prompt when a choice is scored (the task's
    target delimiter and its first choice); only its leading whitespace matters."""
    import torch

    rows = [context_tokens(lm, p, continuation) for p in prompts]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))  # longest first
    out: np.ndarray | None = None
    with lm.computing() as model, torch.inference_mode():
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start : start + max(1, batch_size)]
            width = len(rows[batch[0]])
            ids = torch.full((len(batch), width), lm.pad_token, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, i in enumerate(batch):
                ids[j, : len(rows[i])] = torch.tensor(rows[i])
                mask[j, : len(rows[i])] = 1
            result = model(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                output_hidden_states=True,
            )
            last = result.hidden_states[-1]
            ends = torch.tensor([len(rows[i]) - 1 for i in batch], device=last.device)
            states = last[torch.arange(len(batch), device=last.device), ends].float().cpu()
            if out is None:
                out = np.zeros((len(rows), states.shape[1]), dtype=np.float32)
            out[batch] = states.numpy()
            if advance is not None:
                advance(len(batch))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
