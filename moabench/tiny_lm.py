"""The `tiny` scale's language model: a word-level tokenizer built from a task's vocabulary, a small
GPT-2 built from a transformers config, and a reference policy from a short supervised fine-tune,
cached on disk by config hash and loaded back through the normal `from_pretrained` path.

transformers and tokenizers are imported inside the functions, so registering the language tasks
(and `moabench list`) does not pay their import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from moabench.determinism import one_torch_thread
from moabench.lm import make_batch, sequence_log_probs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, SEP)


def cache_dir() -> Path:
    """Where reference policies are cached: $MOABENCH_CACHE, else ~/.cache/moabench."""
    return Path(os.environ.get("MOABENCH_CACHE", Path.home() / ".cache" / "moabench"))


def _quiet_transformers() -> None:
    """No progress bars or advisory warnings from transformers inside runs and sweeps."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def build_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer whose ids are the special tokens, then `vocabulary`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    _quiet_transformers()
    words = list(SPECIAL_TOKENS) + [w for w in vocabulary if w not in SPECIAL_TOKENS]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=PAD))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS, sep_token=SEP
    )


@dataclass(frozen=True)
class TinyModelConfig:
    n_embd: int = 48
    n_layer: int = 2
    n_head: int = 2
    n_positions: int = 32
    sft_steps: int = 300
    sft_batch_size: int = 64
    sft_learning_rate: float = 3e-3
    seed: int = 0


def build_model(tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def generate_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> list[str]:
    """Sample one response per prompt with a fixed seed; text up to <eos>."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    encoded = tokenizer(list(prompts), add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad(), diverged_sampling():
        output = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            top_k=0,
            temperature=temperature,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    new_tokens = output[:, encoded["input_ids"].shape[1] :]
    responses = []
    for row in new_tokens.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        words = tokenizer.convert_ids_to_tokens(row)
        responses.append(" ".join(w for w in words if w not in SPECIAL_TOKENS))
    return responses


@contextmanager
def diverged_sampling() -> Iterator[None]:
    """Sampling from a policy whose probabilities are no longer finite is a diverged run."""
    try:
        yield
    except RuntimeError as error:
        if "probability tensor contains" not in str(error):
            raise
        from moabench.task import DivergedError

        raise DivergedError(f"sampling failed: {error}") from None


def reference_policy(
    name: str,
    tokenizer: PreTrainedTokenizerFast,
    config: TinyModelConfig,
    demonstrations: Callable[[np.random.Generator, int], tuple[list[str], list[str]]],
) -> PreTrainedModel:
    """The supervised fine-tune of a fresh tiny model on `demonstrations(generator, n)` (prompts,
    responses), cached under `cache_dir()/references/<name>-<hash of vocabulary and config>`."""
    from transformers import AutoModelForCausalLM

    key = hashlib.sha256(
        json.dumps([name, tokenizer.get_vocab(), asdict(config)], sort_keys=True).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "references" / f"{name}-{key}"
    if not (path / "config.json").exists():
        with one_torch_thread():  # the same weights whoever trains it first (test, run, worker)
            _train_reference(path, tokenizer, config, demonstrations)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model


def _train_reference(path: Path, tokenizer, config: TinyModelConfig, demonstrations) -> None:
    model = build_model(tokenizer, config)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.sft_learning_rate)
    model.train()
    for _ in range(config.sft_steps):
        # one numpy generator per batch, seeded from the run's torch generator
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
        prompts, responses = demonstrations(rng, config.sft_batch_size)
        loss = -sequence_log_probs(model, make_batch(tokenizer, prompts, responses)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    model.save_pretrained(scratch)
    try:
        os.replace(scratch, path)  # atomic: concurrent workers never see a half-written model
    except OSError:  # another worker finished first
        shutil.rmtree(scratch, ignore_errors=True)
