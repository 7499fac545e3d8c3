"""Preference pairs with one label per objective, read from the formats the papers use.

Every format becomes `PreferencePairs`: prompts, two responses per prompt, and signs (m, n) with
+1 when objective i prefers response a, -1 when it prefers b, and 0 for a tie or no label. Rows
are checked as they are read; a bad row is a `ConfigError` naming the source, the row and the field.

Formats:
- `moabench` (a file you write): {"prompt", "response_a", "response_b",
  "preferred": {<objective>: "a" | "b" | "tie", ...}}; an objective left out is unlabelled.
- `pku-saferlhf`: PKU-Alignment/PKU-SafeRLHF rows (prompt, response_0, response_1,
  better_response_id, safer_response_id): "better" labels helpfulness, "safer" harmlessness.
- `hh-rlhf`: Anthropic/hh-rlhf transcripts (chosen, rejected) from one subset per objective
  (helpful-base, harmless-base); the prompt is the transcript up to the last assistant turn.
- `signed`: TRL-style rows (prompt, chosen, rejected) with a sign column `raco_s_<objective>`
  per objective, as in RACOo/RedditSummary-Alignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from moabench.core.errors import ConfigError

LABELS = {"a": 1.0, "b": -1.0, "tie": 0.0}
ASSISTANT_TURN = "\n\nAssistant:"


@dataclass
class PreferencePairs:
    prompts: list[str]
    responses_a: list[str]
    responses_b: list[str]
    signs: torch.Tensor  # (m, n)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, n: int) -> PreferencePairs:
        return PreferencePairs(
            self.prompts[:n], self.responses_a[:n], self.responses_b[:n], self.signs[:, :n]
        )


def concatenate(parts: Sequence[PreferencePairs]) -> PreferencePairs:
    return PreferencePairs(
        [p for part in parts for p in part.prompts],
        [r for part in parts for r in part.responses_a],
        [r for part in parts for r in part.responses_b],
        torch.cat([part.signs for part in parts], dim=1),
    )


def require_columns(columns: Iterable[str], needed: Sequence[str], source: str, fmt: str) -> None:
    missing = [c for c in needed if c not in set(columns)]
    if missing:
        raise ConfigError(
            f"{source}: missing field(s) {', '.join(map(repr, missing))} of the {fmt!r} format "
            f"(which needs {', '.join(needed)})"
        )


def _text(
    row: Mapping[str, Any], field: str, source: str, index: int, allow_empty: bool = False
) -> str:
    value = row.get(field)
    if not isinstance(value, str):
        raise ConfigError(
            f"{source}, row {index + 1}: field {field!r} must be a string, got {value!r}"
        )
    if not allow_empty and not value.strip():
        raise ConfigError(f"{source}, row {index + 1}: field {field!r} is empty")
    return value


def _pairs(
    prompts, a, b, signs: list[list[float]], objectives: Sequence[str], source: str
) -> PreferencePairs:
    if not prompts:
        raise ConfigError(f"{source}: no preference pairs")
    tensor = torch.tensor(signs, dtype=torch.float32).T.reshape(len(objectives), len(prompts))
    unlabelled = [o for o, row in zip(objectives, tensor) if not row.any()]
    if unlabelled:
        raise ConfigError(
            f"{source}: no pair prefers one response for objective(s) {', '.join(unlabelled)}"
        )
    return PreferencePairs(list(prompts), list(a), list(b), tensor)


def read_moabench(
    rows: Sequence[Mapping[str, Any]], objectives: Sequence[str], source: str
) -> PreferencePairs:
    prompts, responses_a, responses_b, signs = [], [], [], []
    for index, row in enumerate(rows):
        for field in ("prompt", "response_a", "response_b", "preferred"):
            if row.get(field) is None:
                raise ConfigError(f"{source}, row {index + 1}: missing field {field!r}")
        preferred = {k: v for k, v in row["preferred"].items() if v is not None}
        unknown = sorted(set(preferred) - set(objectives))
        if unknown:
            raise ConfigError(
                f"{source}, row {index + 1}: unknown objective(s) {', '.join(map(repr, unknown))} "
                f"in 'preferred' (this task's objectives: {', '.join(objectives)})"
            )
        bad = {k: v for k, v in preferred.items() if v not in LABELS}
        if bad:
            raise ConfigError(
                f"{source}, row {index + 1}: 'preferred' values must be 'a', 'b' or 'tie', got {bad}"
            )
        prompts.append(_text(row, "prompt", source, index, allow_empty=True))
        responses_a.append(_text(row, "response_a", source, index))
        responses_b.append(_text(row, "response_b", source, index))
        signs.append([LABELS.get(preferred.get(o, "tie"), 0.0) for o in objectives])
    return _pairs(prompts, responses_a, responses_b, signs, objectives, source)


def read_pku_saferlhf(
    rows: Sequence[Mapping[str, Any]], objectives: Sequence[str], source: str
) -> PreferencePairs:
    label_columns = {"helpfulness": "better_response_id", "harmlessness": "safer_response_id"}
    unknown = [o for o in objectives if o not in label_columns]
    if unknown:
        raise ConfigError(
            f"{source}: the PKU-SafeRLHF format has no labels for {', '.join(unknown)}"
        )
    prompts, responses_a, responses_b, signs = [], [], [], []
    for index, row in enumerate(rows):
        prompts.append(_text(row, "prompt", source, index))
        responses_a.append(_text(row, "response_0", source, index))
        responses_b.append(_text(row, "response_1", source, index))
        signs.append([1.0 if row[label_columns[o]] == 0 else -1.0 for o in objectives])
    return _pairs(prompts, responses_a, responses_b, signs, objectives, source)


def split_transcript(transcript: str, source: str, index: int) -> tuple[str, str]:
    """hh-rlhf: (everything up to and including the last "Assistant:", the final answer)."""
    cut = transcript.rfind(ASSISTANT_TURN)
    if cut < 0:
        raise ConfigError(
            f"{source}, row {index + 1}: no {ASSISTANT_TURN.strip()!r} turn in the transcript"
        )
    cut += len(ASSISTANT_TURN)
    return transcript[:cut], transcript[cut:].strip()


def read_hh_rlhf(
    rows: Sequence[Mapping[str, Any]], objective_index: int, n_objectives: int, source: str
) -> PreferencePairs:
    """One hh-rlhf subset: its pairs label objective `objective_index` only (chosen = a)."""
    prompts, responses_a, responses_b, signs = [], [], [], []
    for index, row in enumerate(rows):
        prompt, chosen = split_transcript(_text(row, "chosen", source, index), source, index)
        _, rejected = split_transcript(_text(row, "rejected", source, index), source, index)
        if not chosen or not rejected:
            raise ConfigError(f"{source}, row {index + 1}: an empty final answer")
        prompts.append(prompt)
        responses_a.append(chosen)
        responses_b.append(rejected)
        signs.append([1.0 if i == objective_index else 0.0 for i in range(n_objectives)])
    return PreferencePairs(
        prompts, responses_a, responses_b, torch.tensor(signs).T.reshape(n_objectives, -1)
    )


def read_signed(
    rows: Sequence[Mapping[str, Any]],
    objectives: Sequence[str],
    source: str,
    sign_columns: Mapping[str, str],
) -> PreferencePairs:
    prompts, responses_a, responses_b, signs = [], [], [], []
    for index, row in enumerate(rows):
        prompts.append(_text(row, "prompt", source, index))
        responses_a.append(_text(row, "chosen", source, index))
        responses_b.append(_text(row, "rejected", source, index))
        values = [row[sign_columns[o]] for o in objectives]
        if any(v not in (-1, 0, 1) for v in values):
            raise ConfigError(
                f"{source}, row {index + 1}: sign columns must be -1, 0 or 1, got {values}"
            )
        signs.append([float(v) for v in values])
    return _pairs(prompts, responses_a, responses_b, signs, objectives, source)
