"""A probe for the day a GPU is lent: what the papers' scale would hit first (issue 21).

    python benchmarks/gpu_probe.py            # on a GPU: Qwen3-8B-shaped layers, minutes
    python benchmarks/gpu_probe.py --smoke    # anywhere: tiny shapes on the CPU, seconds (CI)

It prints one JSON object with:
- `sampling_unchanged_by_checkpointing`: greedy output with and without activation checkpointing
  (moabench's `checkpoint_in_eval_mode`) after a gradient-taking forward pass in eval mode;
- `decode_ms_per_token`: decoding with LoRA adapters unmerged and merged
  (`moabench.language.hub.merged_adapters`) on a Qwen3-8B-shaped policy of a few layers,
  projected to its 36 layers and to the minutes of generation in one step of math's paper setup
  (512 responses of up to 2,048 tokens, `generation_batch_size` at a time);
- `safety_step_with_reward_models`: safety's paper step (one micro-batch of its 16 sequences of
  512 tokens, all 32 layers: the step's peak) with both beaver-7B-shaped reward models resident
  on the same GPU, under an 80 GiB cap (`torch.cuda.set_per_process_memory_fraction`): its
  peak, or that it ran out of memory;
- `rehearsal`: the rehearsal's GPU mode (`benchmarks/test_bench_rehearsal.py`) for safety's LS
  step: 1 and 2 layers projected to all 32, against all 32 measured.
With --smoke every model is tiny and on the CPU (memory then the process's resident set).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

from moabench.language import hub

#: Qwen3-8B's shape (config.json), and math's paper setup's rollout
QWEN3_8B = dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, vocab_size=151936)  # fmt: skip
QWEN3_8B_LAYERS = 36
MATH_RESPONSES, MATH_TOKENS = 512, 2048
#: PKU-Alignment/beaver-7b-v1.0-reward and -cost: Llama-7B with a score head
BEAVER_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)  # fmt: skip
CAP_GIB = 80


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


def rehearsal():
    """benchmarks/test_bench_rehearsal.py, whose step and measurement the probe reuses."""
    sys.path.insert(0, str(Path(__file__).parent))
    import test_bench_rehearsal

    return test_bench_rehearsal


def reward_model(smoke: bool, device: str) -> torch.nn.Module:
    """A beaver-7B-shaped reward model (random weights) in bfloat16 on `device`."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tiny = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                num_attention_heads=4, num_key_value_heads=4, vocab_size=128)  # fmt: skip
    sizes = dict(BEAVER_7B, **tiny) if smoke else BEAVER_7B
    with torch.device(device):
        model = LlamaForSequenceClassification(LlamaConfig(**sizes, num_labels=1))
    return model.to(torch.bfloat16)


def safety_step_with_reward_models(smoke: bool) -> dict:
    """Safety's step (one micro-batch, all layers) with both reward models resident, capped."""
    bench = rehearsal()
    setup = bench.paper_setup("safety")
    device = "cpu" if smoke else "cuda"
    rewards = [reward_model(smoke, device) for _ in range(2)]
    if not smoke:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, CAP_GIB * 2**30 / total))
    layers = 2 if smoke else bench.ARCHITECTURES[setup.policy]["num_hidden_layers"]
    sequences = 2 if smoke else setup.sequences
    try:
        measured = bench.measure("safety", "ls", layers, sequences, 1, smoke)
    finally:
        del rewards
        release(smoke)
    return {
        "cap_gib": CAP_GIB, "layers": layers, "sequences": sequences,
        "peak_gib": measured.get("peak_mb", float("nan")) / 1024,
        "out_of_memory": measured.get("out_of_memory", False),
    }  # fmt: skip


def rehearsal_against_projection(smoke: bool) -> dict:
    """The rehearsal's safety LS step at 1 and 2 layers projected to all layers, and measured
    at all layers (s sequences each)."""
    bench = rehearsal()
    setup = bench.paper_setup("safety")
    layers = 3 if smoke else bench.ARCHITECTURES[setup.policy]["num_hidden_layers"]
    sequences = bench.measured_sequences(setup, smoke)
    one, two, full = (
        bench.measure("safety", "ls", depth, sequences, 1, smoke) for depth in (1, 2, layers)
    )
    release(smoke)
    projection = bench.Projection.of(one, two)
    return {
        "layers": layers, "sequences": sequences,
        "projected": {"seconds": projection.at(projection.seconds, layers),
                      "peak_mb": projection.peak_mb(layers, 1.0)},
        "measured": {"seconds": full.get("seconds"),
                     "peak_mb": full.get("peak_mb", 0) - full.get("before_mb", 0)
                     + full.get("weights_mb", 0)},
    }  # fmt: skip


def release(smoke: bool) -> None:
    gc.collect()
    if not smoke:
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (CI)")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run it on a GPU, or with --smoke")
    report = probe(args.smoke)
    report["safety_step_with_reward_models"] = safety_step_with_reward_models(args.smoke)
    report["rehearsal"] = rehearsal_against_projection(args.smoke)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
