"""A probe for the day a GPU is lent: what the papers' scale would hit first (issue 21).

    python benchmarks/gpu_probe.py            # on a GPU: Qwen3-8B-shaped layers, minutes
    python benchmarks/gpu_probe.py --smoke    # anywhere: tiny shapes on the CPU, seconds (CI)

It checks that greedy sampling is identical with and without activation checkpointing (moabench's
`checkpoint_in_eval_mode`), and measures decoding in ms per token with LoRA adapters unmerged
and merged (`moabench.language.hub.merged_adapters`) on a Qwen3-8B-shaped policy of a few layers,
projected to its 36 layers and to the minutes of generation in one step of math's paper setup
(512 responses of up to 2,048 tokens, `generation_batch_size` at a time). It prints one JSON
object. The safety step with both reward models resident and the rehearsal's GPU mode are
measured by `benchmarks/test_bench_rehearsal.py`, not here.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from moabench.language import hub

#: Qwen3-8B's shape (config.json), and math's paper setup's rollout
QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936)  # fmt: skip
QWEN3_8B_LAYERS = 36
MATH_RESPONSES, MATH_TOKENS = 512, 2048


def policy(shape: dict, layers: int, device: str, dtype: torch.dtype, checkpointed: bool):
    """A randomly initialised Qwen3 of `layers` layers with LoRA (rank 16) on q and v."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(**shape, num_hidden_layers=layers, max_position_embeddings=4096)
    model = Qwen3ForCausalLM(config).to(device, dtype)
    if checkpointed:
        hub.checkpoint_activations(model)
        hub.checkpoint_in_eval_mode(model)
    model = get_peft_model(model, LoraConfig(r=16, target_modules=["q_proj", "v_proj"]))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.01)  # adapters that change the outputs
    return model.eval()


def greedy(model, ids: torch.Tensor, tokens: int) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(input_ids=ids, max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, pad_token_id=0)  # fmt: skip


def sampling_unchanged_by_checkpointing(shape, layers, device, dtype) -> bool:
    """Greedy output after a gradient-taking forward pass in eval mode (as the online trainer
    runs), with and without checkpointing."""
    ids = torch.randint(1, shape["vocab_size"], (2, 8), device=device)
    outputs = []
    for checkpointed in (False, True):
        model = policy(shape, layers, device, dtype, checkpointed)
        model(input_ids=ids).logits.float().mean().backward()
        outputs.append(greedy(model, ids, 16))
    return bool(torch.equal(outputs[0], outputs[1]))


def decode_ms_per_token(model, batch: int, tokens: int, device: str) -> float:
    ids = torch.randint(1, model.config.vocab_size, (batch, 64), device=device)
    greedy(model, ids, 4)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    greedy(model, ids, tokens)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / tokens


def probe(smoke: bool) -> dict:
    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    shape = (
        dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
             head_dim=8, vocab_size=64)  # fmt: skip
        if smoke
        else QWEN3_8B
    )
    layers, batch, tokens = (2, 4, 8) if smoke else (4, 64, 128)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "sampling_unchanged_by_checkpointing": sampling_unchanged_by_checkpointing(
            shape, layers, device, dtype
        ),
    }
    model = policy(shape, layers, device, dtype, checkpointed=False)
    unmerged = decode_ms_per_token(model, batch, tokens, device)
    with hub.merged_adapters(model):
        merged = decode_ms_per_token(model, batch, tokens, device)
    scale = QWEN3_8B_LAYERS / layers  # decoding time grows with the layers; the head is one
    calls = MATH_RESPONSES / batch
    result.update(
        layers=layers,
        generation_batch_size=batch,
        decode_ms_per_token={"unmerged": unmerged, "merged": merged},
        projected_math_step_generation_minutes={
            name: ms * scale * MATH_TOKENS * calls / 60_000
            for name, ms in (("unmerged", unmerged), ("merged", merged))
        },
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (CI)")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run it on a GPU, or with --smoke")
    print(json.dumps(probe(args.smoke), indent=1))


if __name__ == "__main__":
    main()
