"""Causal-LM plumbing shared by both scales: right-padded prompt + response batches, the
log-probability of each response under a model (`NextTokenLogProbs`: trl's
`selective_log_softmax` with a lean backward), sampling that diverged, and the last transformer
block."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from moabench.core.errors import ConfigError
from moabench.core.task import DivergedError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Batch:
    """Prompt + response sequences, right-padded; `response_mask` marks the response tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: str | torch.device) -> Batch:
        return Batch(
            self.input_ids.to(device), self.attention_mask.to(device), self.response_mask.to(device)
        )


def make_batch(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int | None = None,
) -> Batch:
    """Token ids of `prompt response <eos>` for each pair; the response and <eos> are scored.
    Beyond `max_length` tokens the response keeps at most half of them and the prompt loses
    its beginning (trl's "keep_end" for the prompt)."""
    rows = []
    for prompt, response in zip(prompts, responses):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        if max_length is not None and len(prompt_ids) + len(response_ids) + 1 > max_length:
            response_ids = response_ids[: max(max_length // 2, max_length - 1 - len(prompt_ids))]
            prompt_ids = prompt_ids[len(prompt_ids) - (max_length - 1 - len(response_ids)) :]
        rows.append(
            (torch.tensor(prompt_ids, dtype=torch.long),
             torch.tensor(response_ids + [tokenizer.eos_token_id], dtype=torch.long))
        )  # fmt: skip
    return right_padded(rows, tokenizer.pad_token_id)


#: From this vocabulary size on, logits are computed only at the positions that predict a response
#: token (transformers' `logits_to_keep`): at Qwen3's 152k words a 1,024-token prompt's logits
#: are 0.3 GB per sequence in bfloat16, and float32 copies of them in the loss. Below it (the
#: tiny scale's hundred words) every position's are: they cost nothing there, and dropping them
#: moves lm_head's gradient by float rounding (its sum over positions is blocked differently),
#: which would change the committed tiny records.
RESPONSE_LOGITS_ONLY_FROM_VOCABULARY = 4096


def token_log_probs(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """log pi(token_t | tokens_<t) for t >= 1, shape (batch, length - 1), in float32 at least;
    weigh by `batch.response_mask[:, 1:]` to keep the response tokens (at a large vocabulary the
    positions before the batch's first response token are 0: their logits are not computed)."""
    length = batch.input_ids.shape[1]
    kept = length - first_response_position(batch) + 1  # from the position predicting it
    sliced = model.config.vocab_size >= RESPONSE_LOGITS_ONLY_FROM_VOCABULARY and kept < length
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False,
        **({"logits_to_keep": kept} if sliced else {}),
    ).logits  # no key-value cache: none is needed, and checkpointed layers must not fill one
    if not sliced:
        return NextTokenLogProbs.apply(logits, batch.input_ids)[0]
    log_probs = NextTokenLogProbs.apply(logits, batch.input_ids[:, length - kept :])[0]
    return torch.nn.functional.pad(log_probs, (length - kept, 0))


def first_response_position(batch: Batch) -> int:
    """The first position holding a response token in any row (the length when there is none)."""
    scored = batch.response_mask.bool().any(dim=0)
    return int(scored.int().argmax()) if bool(scored.any()) else batch.input_ids.shape[1]


#: the float32 working memory of the log-probabilities, forward and backward: rows are taken
#: this many bytes of float32 logits at a time (one sequence at a time at Qwen3's vocabulary)
CHUNK_BYTES = 2**26


def row_chunks(logits: torch.Tensor) -> int:
    """How many rows of `logits` (batch, T, V) fit in `CHUNK_BYTES` as float32 (at least 1)."""
    return max(1, CHUNK_BYTES // max(1, 4 * logits[0].numel()))


class NextTokenLogProbs(torch.autograd.Function):
    """(log softmax(logits[:, t])[ids[:, t + 1]] for t < T - 1, the rows' logsumexp), computed
    as trl's `selective_log_softmax` does in float32 (the next token's logit minus its row's
    logsumexp) and in float32 for a bfloat16 model too. The backward,
    g (onehot(next token) - softmax), holds the logits' gradient in their dtype and the float32
    softmax of `CHUNK_BYTES` of rows at a time (`row_chunks`: the whole batch at the tiny
    scale, one sequence at a time at Qwen3's vocabulary), where autograd's would allocate several
    logits-sized float32 tensors (under vmap, as torchjd's autogram engine batches the m losses'
    gradients, m times each). For bfloat16 logits at Qwen3's vocabulary its peak was 2.0x lower
    than autograd's at 4 sequences of 1,024 tokens and 1.5x at one of 2,304
    (`benchmarks/test_bench_log_probs.py`). Its values are the same bit for bit however the rows
    are chunked, and its gradients are bit for bit autograd's in float32."""

    generate_vmap_rule = True

    @staticmethod
    def forward(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wide = torch.promote_types(logits.dtype, torch.float32)
        shifted = logits[:, :-1]
        selected = shifted.gather(-1, ids[:, 1:, None]).squeeze(-1).to(wide)
        logsumexp = torch.cat(
            [torch.logsumexp(rows.to(wide), dim=-1) for rows in shifted.split(row_chunks(logits))]
        )
        return selected - logsumexp, logsumexp

    @staticmethod
    def setup_context(ctx, inputs, outputs) -> None:
        logits, ids = inputs
        ctx.mark_non_differentiable(outputs[1])
        ctx.save_for_backward(logits, ids, outputs[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _) -> tuple[torch.Tensor, None]:
        logits, ids, logsumexp = ctx.saved_tensors
        # the last position predicts nothing: weight 0 (its logsumexp keeps exp() finite)
        following = torch.cat([ids[:, 1:], ids[:, -1:]], dim=1)
        grad = torch.cat([grad, torch.zeros_like(grad[:, -1:])], dim=1)
        last = torch.logsumexp(logits[:, -1:].to(logsumexp.dtype), dim=-1)
        logsumexp = torch.cat([logsumexp, last], dim=1)
        size = row_chunks(logits)
        chunks = []
        for start in range(0, logits.shape[0], size):  # CHUNK_BYTES of float32 softmax at a time
            rows = slice(start, start + size)
            softmax = logits[rows].to(logsumexp.dtype, copy=True)
            softmax.sub_(logsumexp[rows, :, None]).exp_()
            d_logits = (-grad[rows])[..., None] * softmax  # out of place: `grad` may be vmapped
            del softmax
            d_logits.scatter_add_(-1, following[rows, :, None], grad[rows, :, None])
            chunks.append(d_logits.to(logits.dtype))
            del d_logits
        return (chunks[0] if len(chunks) == 1 else torch.cat(chunks)), None


def sequence_log_probs(model: PreTrainedModel, batch: Batch) -> torch.Tensor:
    """Sum of the log-probabilities of each sequence's response tokens, shape (batch,)."""
    return (token_log_probs(model, batch) * batch.response_mask[:, 1:]).sum(dim=-1)


def select_rows(
    batch: Batch, index: torch.Tensor | slice, trim: bool = True, width: int | None = None
) -> Batch:
    """The rows `index` of a batch; with `trim`, without the columns that are padding in all
    (a device sync to find them, unless their `width` is given)."""
    if width is None:
        width = (
            int(batch.attention_mask[index].sum(dim=1).max()) if trim else batch.input_ids.shape[1]
        )
    return Batch(
        batch.input_ids[index, :width],
        batch.attention_mask[index, :width],
        batch.response_mask[index, :width],
    )


def sample_tokens(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Up to `max_new_tokens` tokens sampled after the left-padded prompts, (n, new), padded
    with `pad_token_id` after each row's <eos>: HF `generate(do_sample=True, top_k=0)`'s samples
    for the same torch seed, token for token (the same forward calls with a key-value cache, one
    multinomial draw over softmax(logits / temperature) per step for every row, finished ones
    included, until every row has its <eos>), without `generate`'s per-call set-up; temperature 0
    is greedy decoding (`generate(do_sample=False)`'s)."""
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    cache_name = cache_argument(model)
    step_ids, cache, sampled = input_ids, None, []
    for _ in range(max_new_tokens):
        output = model(
            input_ids=step_ids, attention_mask=attention_mask, use_cache=True,
            **{cache_name: cache},
        )  # fmt: skip
        cache = output[cache_name]
        logits = output.logits[:, -1].to(copy=True, dtype=torch.float32)
        if temperature == 0:  # greedy, as generate(do_sample=False): no random draw
            tokens = logits.argmax(dim=-1)
        else:
            probabilities = torch.softmax(logits / temperature if temperature != 1 else logits, -1)
            tokens = torch.multinomial(probabilities, num_samples=1).squeeze(1)
        tokens = torch.where(unfinished, tokens, pad_token_id)
        sampled.append(tokens)
        unfinished &= tokens != eos_token_id
        if not unfinished.any():
            break
        step_ids = tokens[:, None]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(tokens), 1)], 1)
    return torch.stack(sampled, dim=1) if sampled else input_ids[:, :0]


@dataclass
class Samples:
    """What a policy sampled: the responses' text (for the rewards) and the sampled token ids
    themselves (`sampled_batch`), so that training scores exactly what was sampled."""

    responses: list[str]
    batch: Batch


def sampled_batch(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    new_tokens: torch.Tensor,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
) -> Batch:
    """Left-padded prompts and the tokens sampled after them (as `sample_tokens` or `generate`
    return them) as right-padded prompt + response rows: the response is every sampled token
    up to its first <eos> included; a response cut at the length limit has no <eos>, so no
    loss falls on a token that was never sampled."""
    is_eos = torch.isin(new_tokens, torch.as_tensor(list(eos_token_ids), device=new_tokens.device))
    lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, new_tokens.shape[1])
    rows = [
        (prompt[mask.bool()], tokens[:length])
        for prompt, mask, tokens, length in zip(prompt_ids, prompt_mask, new_tokens, lengths)
    ]
    return right_padded(rows, pad_token_id)


def right_padded(rows: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_token_id: int) -> Batch:
    """(prompt ids, response ids) per row -> a right-padded `Batch` marking the responses."""
    width = max(len(prompt) + len(response) for prompt, response in rows)
    shape, device = (len(rows), width), rows[0][0].device
    input_ids = torch.full(shape, pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros(shape, dtype=torch.long, device=device)
    response_mask = torch.zeros(shape, dtype=torch.bool, device=device)
    for i, (prompt, response) in enumerate(rows):
        end = len(prompt) + len(response)
        input_ids[i, :end] = torch.cat([prompt, response])
        attention_mask[i, :end] = 1
        response_mask[i, len(prompt) : end] = True
    return Batch(input_ids, attention_mask, response_mask)


def concatenate(parts: Sequence[Samples], pad_token_id: int) -> Samples:
    """The samples of several calls (generation batches) as one, rows in order."""
    rows = [
        (ids[mask.bool() & ~response], ids[response])
        for part in parts
        for ids, mask, response in zip(
            part.batch.input_ids, part.batch.attention_mask, part.batch.response_mask
        )
    ]
    return Samples([r for part in parts for r in part.responses], right_padded(rows, pad_token_id))


def cache_argument(model: PreTrainedModel) -> str:
    """The key-value cache's name in `model`'s forward arguments and output (`past_key_values`
    before transformers 5.24's `cache`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@contextmanager
def diverged_sampling() -> Iterator[None]:
    """Sampling from a policy whose probabilities are no longer finite is a diverged run."""
    try:
        yield
    except RuntimeError as error:
        if "probability tensor contains" not in str(error):
            raise
        raise DivergedError(f"sampling failed: {error}") from None


def last_block_parameters(model) -> list[torch.Tensor]:
    """Trainable parameters of the highest-numbered transformer block (GAPO's last layer)."""
    name = last_block_name(model)
    return [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(f"{name}.")]


def last_block_name(model) -> str:
    """The name of the highest-numbered transformer block with trainable parameters."""
    numbered = [
        (int(m.group(2)), m.group(1))
        for n, p in model.named_parameters()
        if p.requires_grad and (m := re.search(r"^(.*?\.(?:h|layers|layer|blocks)\.(\d+))\.", n))
    ]
    if not numbered:
        raise ConfigError(
            "gram_parameters='last-block': no numbered transformer blocks among the trainable parameters"
        )
    return max(numbered)[1]
