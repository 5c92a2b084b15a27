"""Batched sequence log-probabilities through the seam, and the two LoFiT task losses.

Sequences are prompt ids followed by target ids, right-padded. With right padding and a causal mask
no real token ever sees a pad, so no attention mask is needed and positions stay 0..T-1. Only the
logits that predict target tokens are computed (``logits_to_keep``), which keeps the vocabulary
projection small on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.runners.hf import Model
from workbench.seam.interventions import Intervention


@dataclass
class TokenBatch:
    """ids: (batch, T) right-padded; targets: (batch, T) bool, True where a token is scored."""

    ids: torch.Tensor
    targets: torch.Tensor

    @property
    def keep(self) -> torch.Tensor:
        """Positions whose logits predict some target token (position t predicts token t + 1)."""
        columns = self.targets.any(0).nonzero().flatten()
        return torch.arange(int(columns.min()) - 1, int(columns.max()), device=self.ids.device)


def encode_pair(
    model: Model, prompt: str, target: str, *, max_prompt: int, max_target: int, eos: bool = False
):
    """(prompt ids, target ids): the prompt keeps its last ``max_prompt`` tokens, the target its first ones."""
    tokenizer = model.tokenizer
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][-max_prompt:]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if eos and tokenizer.eos_token_id is not None:
        target_ids = target_ids + [tokenizer.eos_token_id]
    target_ids = target_ids[:max_target]
    if not prompt_ids:  # a target must be predicted from something
        prompt_ids = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else target_ids[0]]
    return prompt_ids, target_ids


def make_batch(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> TokenBatch:
    length = max(len(p) + len(t) for p, t in pairs)
    ids = torch.full((len(pairs), length), pad_id, dtype=torch.long)
    targets = torch.zeros((len(pairs), length), dtype=torch.bool)
    for row, (prompt, target) in enumerate(pairs):
        ids[row, : len(prompt) + len(target)] = torch.tensor(prompt + target)
        targets[row, len(prompt) : len(prompt) + len(target)] = True
    return TokenBatch(ids, targets)


def pad_id(model: Model) -> int:
    tokenizer = model.tokenizer
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0  # pragma: no cover


def padding_mask(batch: TokenBatch) -> torch.Tensor | None:
    """(batch, T) attention mask of a right-padded batch (1 up to each row's last scored token), or None
    when no row is padded."""
    length = batch.targets.shape[1]
    ends = length - batch.targets.flip(1).to(torch.int8).argmax(1)  # one past each row's last target
    mask = (torch.arange(length)[None, :] < ends[:, None]).long()
    return None if bool(mask.all()) else mask


def needs_padding_mask(interventions: Sequence[Intervention]) -> bool:
    """Probability edits read whole attention rows (ACT's column means count the queries that see a key),
    so pads must be masked for them; every other intervention sees real tokens only under right padding."""
    from workbench.seam.interventions import ProbabilityEdit

    return any(isinstance(i, ProbabilityEdit) for i in interventions)


def target_logits(model: Model, batch: TokenBatch, interventions: Sequence[Intervention] = ()):
    """(logits (batch, kept, vocab) fp32, targets (batch, kept) ids, mask (batch, kept) bool).

    Runs ``model.hf`` inside the seam; gradients flow into any tensors the interventions hold. A padded
    batch gets an attention mask only when an intervention edits probabilities (``needs_padding_mask``):
    the unmasked call keeps the fast attention path.
    """
    device = model.device
    ids = batch.ids.to(device)
    keep = batch.keep.to(device)
    attention = padding_mask(batch) if needs_padding_mask(interventions) else None
    kwargs = {} if attention is None else {"attention_mask": attention.to(device)}
    with model.seam(None, interventions):
        logits = model.hf(input_ids=ids, use_cache=False, logits_to_keep=keep, **kwargs).logits
    next_ids = ids[:, keep + 1]
    mask = batch.targets.to(device)[:, keep + 1]
    return logits.float(), next_ids, mask


def sequence_logprobs(model: Model, batch: TokenBatch, interventions: Sequence[Intervention] = ()):
    """Sum over target tokens of log p(token | prefix), per row: (batch,). Also the token counts."""
    logits, next_ids, mask = target_logits(model, batch, interventions)
    token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, next_ids[..., None]).squeeze(-1)
    return (token_logprobs * mask).sum(-1), mask.sum(-1)


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta: float):
    """DPO (Rafailov et al.): -log sigmoid(beta * (policy margin - reference margin)); mean over pairs.

    Returns (loss, fraction of pairs whose implicit reward prefers the chosen answer).
    """
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    loss = -F.logsigmoid(beta * margin).mean()
    return loss, (margin > 0).float().mean()


def completion_loss(model: Model, batch: TokenBatch, interventions: Sequence[Intervention] = ()):
    """Cross-entropy on completion tokens only (mean over those tokens), as trl's completion-only collator."""
    logits, next_ids, mask = target_logits(model, batch, interventions)
    losses = F.cross_entropy(logits.flatten(0, 1), next_ids.flatten(), reduction="none").view_as(mask)
    return (losses * mask).sum() / mask.sum().clamp_min(1)
