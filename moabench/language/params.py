"""The language tasks' parameters, one model per group of settings that apply together.

Every run takes the common `LanguageParams` (a task may extend them, as summarization's
`n_objectives`), plus the group of its paradigm (`PreferenceFields` or `OnlineFields`) and of its
scale (`TinyPreferenceFields` at the tiny scale's preference paradigm, `HubFields` at the Hugging
Face scales). `params_model` composes the model of one combination, so a parameter that does not
apply to it is rejected by that model, and a record holds only the parameters its run used.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Literal

from pydantic import BaseModel, Field, create_model, model_validator

from moabench.core.algorithm import Paradigm
from moabench.core.task import TaskParams

Scale = Literal["tiny", "small", "paper"]
Precision = Literal["bfloat16", "float16", "float32"]


class LanguageParams(TaskParams):
    """Parameters of every language run, at every scale and in both paradigms."""

    paradigm: Literal["preference", "online"] | None = Field(
        None, description="DPO on preference pairs, or online RL; None: the algorithm's own"
    )
    scale: Scale = Field(
        "tiny", description="tiny: embedded, offline, CPU; small/paper: Hugging Face models"
    )
    steps: int = Field(80, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="preference pairs per step")
    learning_rate: float = Field(1e-3, gt=0, description="optimizer step size")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="adam, or plain SGD (which keeps the rule's direction exactly)"
    )
    n_eval_prompts: int = Field(128, ge=1, description="held-out prompts scored at evaluation")
    data_seed: int = Field(0, description="seed of the prompts, pair labels and data shuffling")
    gram_parameters: Literal["all", "last-block"] = Field(
        "all", description="parameters whose gradients form the Gram matrix (GAPO: last-block)"
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="gradient accumulation: preference pairs, or online responses, per forward "
        "and backward pass (None: the whole batch in one)",
    )


class PreferenceFields(BaseModel):
    """Preference training (DPO on pairs)."""

    beta: float = Field(0.1, gt=0, description="DPO inverse temperature")
    n_pairs: int = Field(512, ge=2, description="training preference pairs")

    @model_validator(mode="after")
    def _micro_batches_divide_the_batch(self) -> PreferenceFields:
        batch, micro = getattr(self, "batch_size", None), getattr(self, "micro_batch_size", None)
        if batch is not None and micro is not None and batch % micro:
            raise ValueError(f"micro_batch_size {micro} must divide batch_size {batch}")
        return self


class TinyPreferenceFields(BaseModel):
    """Preference training at the tiny scale, whose pairs are labelled by the hidden rules."""

    label_noise: float = Field(
        0.1,
        gt=0,
        description="tiny: Bradley-Terry temperature, P(a > b) = sigmoid((r_a - r_b) / noise)",
    )


class OnlineFields(BaseModel):
    """Online training (sample, score, policy gradient)."""

    group_size: int = Field(4, ge=1, description="online: responses sampled per prompt (k)")
    prompts_per_step: int = Field(8, ge=1, description="online: prompts per step")
    advantage: Literal["grpo", "rloo", "reinforce"] = Field(
        "grpo", description="online: per-objective advantage estimator"
    )
    ppo_epochs: int = Field(
        1, ge=1, description="online: updates per batch; above 1, PPO's clipped surrogate acts"
    )
    clip_epsilon: float = Field(0.2, gt=0, description="online: PPO clip range")
    kl_coef: float = Field(0.05, ge=0, description="online: weight of the KL to the reference")
    kl_in_reward: bool = Field(
        False,
        description="online: subtract the KL from the rewards instead of adding it to the loss",
    )
    temperature: float = Field(1.0, ge=0, description="online: sampling temperature")

    @model_validator(mode="after")
    def _micro_batches_divide_the_rollout(self) -> OnlineFields:
        responses = self.prompts_per_step * self.group_size
        micro = getattr(self, "micro_batch_size", None)
        if micro is not None and responses % micro:
            raise ValueError(
                f"micro_batch_size {micro} must divide the {responses} responses of a step "
                f"(prompts_per_step {self.prompts_per_step} x group_size {self.group_size}); "
                "set micro_batch_size to a divisor, or to null for the whole rollout in one pass"
            )
        return self

    @model_validator(mode="after")
    def _groups_can_be_compared(self) -> OnlineFields:
        if self.group_size < 2 and self.advantage in ("grpo", "rloo"):
            raise ValueError(
                f"the {self.advantage} advantage compares the responses to one prompt, so "
                f"group_size must be at least 2 (got {self.group_size}); use advantage=reinforce "
                "for one response per prompt"
            )
        if self.temperature == 0 and self.group_size > 1:
            raise ValueError(
                f"temperature 0 is greedy decoding, which gives the same response "
                f"{self.group_size} times per prompt; use a temperature above 0 or group_size=1"
            )
        return self


class HubFields(BaseModel):
    """The Hugging Face scales (small, paper): models, data and evaluation."""

    policy: str | None = Field(None, description="small/paper: causal LM, Hub id or local path")
    dataset: str | None = Field(None, description="small/paper: Hub id, local copy or pair file")
    strict: bool = Field(
        False,
        description="small/paper: a dataset row with a known quirk (an empty answer, ...) is an "
        "error, not skipped and counted",
    )
    n_pairs: int = Field(
        512, ge=2, description="training pairs (online: their prompts; or problems) read"
    )
    reward_models: dict[str, str] = Field(
        default_factory=dict, description="small/paper: {objective: Hub id or local path}"
    )
    lora_rank: int = Field(16, ge=0, description="small/paper: LoRA rank (0: full fine-tune)")
    max_length: int = Field(512, ge=8, description="small/paper: tokens per prompt + response")
    max_new_tokens: int = Field(
        128, ge=1, description="small/paper: tokens generated at evaluation"
    )
    generation_batch_size: int | None = Field(
        None,
        ge=1,
        description="small/paper: sequences per generate call, in online rollouts and "
        "evaluation (None: batch_size)",
    )
    generation_engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="small/paper, online: what samples the rollouts: transformers' generate, or "
        "vLLM (pip install vllm; a CUDA GPU and LoRA adapters); evaluation samples with "
        "transformers either way",
    )
    device: str | None = Field(
        None, description="small/paper: torch device (None: cuda if available)"
    )
    dtype: Precision | None = Field(
        None,
        description="small/paper: the policy's weights (None: bfloat16 on CUDA, float32 on CPU; "
        "LoRA adapters stay float32; float16 is refused: no loss scaling)",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="small/paper: recompute each block's activations in the backward pass "
        "(less memory, about one more forward pass)",
    )
    reward_device: str | None = Field(
        None, description="small/paper: torch device of the reward models (None: the policy's)"
    )
    reward_dtype: Precision | None = Field(
        None,
        description="small/paper: the reward models' weights (None: bfloat16 on CUDA, float32 "
        "on CPU)",
    )
    gram_engine: Literal["jacobian", "autogram"] = Field(
        "jacobian",
        description="small/paper: the per-objective gradients' Gram matrix from their m x d "
        "Jacobian, or from torchjd's autogram engine, which never holds it (full fine-tuning of "
        "large models; one micro-batch, no gradient_checkpointing, no trained tied weights)",
    )
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="small/paper: lm-eval tasks run on the trained policy"
    )
    lm_eval_include_path: str | None = Field(None, description="small/paper: custom lm-eval tasks")
    lm_eval_limit: int | None = Field(
        None, ge=1, description="small/paper: lm-eval examples per task"
    )

    @model_validator(mode="after")
    def _vllm_can_sample(self) -> HubFields:
        if self.generation_engine != "vllm":
            return self
        if getattr(self, "group_size", None) is None:
            raise ValueError(
                "generation_engine 'vllm' samples online rollouts: use paradigm=online"
            )
        if self.lora_rank == 0:
            raise ValueError(
                "generation_engine 'vllm' takes the policy's LoRA adapters at every step; full "
                "fine-tuning (lora_rank=0) would reload the whole model: use lora_rank > 0"
            )
        if importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "generation_engine 'vllm' needs vLLM, which is not installed (pip install vllm, "
                "on a machine with a CUDA GPU); or use generation_engine=transformers"
            )
        return self

    @model_validator(mode="after")
    def _policy_not_in_float16(self) -> HubFields:
        if self.dtype == "float16":
            raise ValueError(
                "dtype 'float16' for the policy: training in half precision needs loss scaling "
                "and float32 master weights, which moabench's trainers do not have (gradients "
                "underflow); use bfloat16 or float32 (reward_dtype may be float16)"
            )
        return self

    @model_validator(mode="after")
    def _generation_fits_in_max_length(self) -> HubFields:
        if self.max_new_tokens >= self.max_length:
            raise ValueError(
                f"max_new_tokens {self.max_new_tokens} leaves no room for the prompt in "
                f"max_length {self.max_length} tokens; raise max_length or lower max_new_tokens"
            )
        return self


def field_groups(scale: str, paradigm: Paradigm) -> tuple[type[BaseModel], ...]:
    """The groups of parameters that apply at `scale` in `paradigm`, beyond the common ones."""
    by_paradigm = PreferenceFields if paradigm == Paradigm.PREFERENCE else OnlineFields
    if scale != "tiny":
        return (by_paradigm, HubFields)
    return (
        (PreferenceFields, TinyPreferenceFields)
        if paradigm == Paradigm.PREFERENCE
        else (OnlineFields,)
    )


ALL_GROUPS = (PreferenceFields, TinyPreferenceFields, OnlineFields, HubFields)


@cache
def params_model(
    common: type[LanguageParams], scale: str, paradigm: Paradigm
) -> type[LanguageParams]:
    """The parameter model of a task whose common parameters are `common`, at one combination."""
    return create_model(  # type: ignore[call-overload]
        f"{common.__name__}_{scale}_{paradigm.value}",
        __base__=(common, *field_groups(scale, paradigm)),
        __module__=__name__,
    )


def applies_to(name: str) -> str | None:
    """Where a parameter of no common model applies ("online training", ...), or None."""
    where = {
        PreferenceFields: "preference training",
        TinyPreferenceFields: "preference training at scale 'tiny'",
        OnlineFields: "online training",
        HubFields: "the small and paper scales",
    }
    places = [text for group, text in where.items() if name in group.model_fields]
    return " and ".join(places) or None
