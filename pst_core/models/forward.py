"""The forward-pass math shared by scoring, self-verification and training.

Log-probabilities are computed only at the positions that matter, never as full-vocabulary
logits for every position: the decoder runs once, the hidden states at the wanted positions are
gathered, and only those are multiplied by the output embedding (Gemma's 262k vocabulary made
full logits for 32 x 200 tokens peak at 21 GB).
"""

from __future__ import annotations

import functools

import torch


def pack_continuations(pairs: list[tuple[list[int], list[int]]], pad_id: int, device):
    """Right-padded (context + continuation) rows, and where each continuation token is predicted.

    Position p predicts token p + 1, so a continuation starting at index len(ctx) is predicted
    from positions len(ctx) - 1 ... len(ctx) + len(cont) - 2.

    Returns:
        input_ids, attention_mask, rows, positions, targets (the last three flat, one per
        continuation token).
    """
    seqs = [ctx + cont for ctx, cont in pairs]
    width = max(len(s) for s in seqs)
    input_ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], device=device)
    attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs],
                                  device=device)
    rows, positions, targets = [], [], []
    for b, (ctx, cont) in enumerate(pairs):
        rows += [b] * len(cont)
        positions += range(len(ctx) - 1, len(ctx) - 1 + len(cont))
        targets += cont
    as_tensor = functools.partial(torch.tensor, dtype=torch.long, device=device)
    return input_ids, attention_mask, as_tensor(rows), as_tensor(positions), as_tensor(targets)


def hidden_at(model, input_ids, attention_mask, rows, positions):
    """(causal LM, final hidden states at the given (row, position) pairs), never all logits."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(causal_lm, causal_lm.base_model_prefix)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return causal_lm, hidden[rows, positions]


def output_logits(causal_lm, hidden: torch.Tensor) -> torch.Tensor:
    """Float logits from final hidden states, with the model's logit soft-capping (Gemma)."""
    logits = causal_lm.get_output_embeddings()(hidden).float()
    cap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits
