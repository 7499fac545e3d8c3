"""At a large vocabulary the log-probabilities compute logits only where a response token is
predicted (issue 21, item 11: a prompt's logits at Qwen3's 152k words are GBs); the values of the
response tokens are the full computation's, and the tiny scale computes every position's."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from moabench.language.lm import (
    RESPONSE_LOGITS_ONLY_FROM_VOCABULARY,
    Batch,
    NextTokenLogProbs,
    token_log_probs,
)


def _model(vocabulary: int) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocabulary, n_positions=32, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()  # no dropout: the two computations see the same model


def _batch(vocabulary: int) -> Batch:
    """Right-padded rows with prompts of 5 and 7 tokens, responses of 4 and 3."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocabulary, (2, 12), generator=generator)
    attention = torch.ones(2, 12, dtype=torch.long)
    response = torch.zeros(2, 12, dtype=torch.bool)
    response[0, 5:9], response[1, 7:10] = True, True
    attention[0, 9:], attention[1, 10:] = 0, 0
    return Batch(ids, attention, response)


def _full_log_probs(model: GPT2LMHeadModel, batch: Batch) -> torch.Tensor:
    """Every position's logits, as before the slicing."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return NextTokenLogProbs.apply(logits, batch.input_ids)[0]


def _logit_positions(model: GPT2LMHeadModel, batch: Batch) -> tuple[torch.Tensor, int]:
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    try:
        log_probs = token_log_probs(model, batch)
    finally:
        hook.remove()
    return log_probs, seen[0]


def test_a_large_vocabulary_computes_logits_from_the_first_response_tokens_predictor_only():
    vocabulary = RESPONSE_LOGITS_ONLY_FROM_VOCABULARY
    model, batch = _model(vocabulary), _batch(vocabulary)
    log_probs, positions = _logit_positions(model, batch)
    assert positions == 12 - 5 + 1  # positions 4..11: position 4 predicts row 0's first token
    full = _full_log_probs(model, batch)
    scored = batch.response_mask[:, 1:]
    assert log_probs.shape == full.shape
    assert torch.equal(log_probs[scored], full[scored])
    assert torch.all(log_probs[:, :4] == 0)


def test_the_gradient_of_the_response_log_probs_is_the_full_computations_to_rounding():
    vocabulary = RESPONSE_LOGITS_ONLY_FROM_VOCABULARY
    model, batch = _model(vocabulary), _batch(vocabulary)
    scored = batch.response_mask[:, 1:]

    def gradient(log_probs: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        (log_probs * scored).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    sliced = gradient(token_log_probs(model, batch))
    full = gradient(_full_log_probs(model, batch))
    for a, b in zip(sliced, full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("vocabulary", [100, RESPONSE_LOGITS_ONLY_FROM_VOCABULARY - 1])
def test_a_small_vocabulary_computes_every_positions_logits(vocabulary):
    """The tiny scale's records stay bit for bit what they were."""
    model, batch = _model(vocabulary), _batch(vocabulary)
    log_probs, positions = _logit_positions(model, batch)
    full = _full_log_probs(model, batch)
    assert positions == 12
    assert torch.equal(log_probs, full)
