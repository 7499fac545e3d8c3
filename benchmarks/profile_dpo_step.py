"""Where a tiny DPO step's CPU time goes, by operator (issue 20: why stacking a front's models
wins little at this size). The tiny scale's GPT-2 (`TinyModelConfig`: 48 wide, 2 layers, 2
heads), 64 rows of 14 tokens, forward and backward in training mode (dropout on, as in the
preference trainer), one torch thread; torch's profiler over 5 steps. Figures in BENCHMARKS.md
("A front trained together").

Run: python benchmarks/profile_dpo_step.py
"""

import time

import moabench  # noqa: F401 - pins the CPU code paths before torch loads
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from moabench.language.setups import TinyModelConfig

VOCABULARY, ROWS, TOKENS, STEPS = 120, 64, 14, 5


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tiny = TinyModelConfig()
    config = GPT2Config(vocab_size=VOCABULARY, n_positions=tiny.n_positions, n_embd=tiny.n_embd,
                        n_layer=tiny.n_layer, n_head=tiny.n_head)  # fmt: skip
    model = GPT2LMHeadModel(config).train()
    ids = torch.randint(0, VOCABULARY, (ROWS, TOKENS))
    mask = torch.ones_like(ids)
    mask[:, :4] = 0  # left padding, as the prompts have

    def step() -> None:
        model(input_ids=ids, attention_mask=mask).logits.sum().backward()

    for _ in range(STEPS):
        step()
    start = time.process_time()
    for _ in range(20):
        step()
    print(f"one step: {(time.process_time() - start) / 20 * 1000:.1f} ms of CPU")
    with torch.profiler.profile() as profile:
        for _ in range(STEPS):
            step()
    print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
