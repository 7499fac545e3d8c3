"""Preference pairs with one label per objective, read from the formats the papers use, and the
row policy that every dataset reader shares.

Every format becomes `PreferencePairs`: prompts, two responses per prompt, and signs (m, n) with
+1 when objective i prefers response a, -1 when it prefers b, and 0 for a tie or no label.

Formats:
- `moabench` (a file you write): {"prompt", "response_a", "response_b",
  "preferred": {<objective>: "a" | "b" | "tie", ...}}; an objective left out is unlabelled. In a
  table (CSV, Parquet) one column per objective holds its label instead of `preferred`, an
  empty cell leaving the pair unlabelled for it.
- `pku-saferlhf`: PKU-Alignment/PKU-SafeRLHF rows (prompt, response_0, response_1,
  better_response_id, safer_response_id): "better" labels helpfulness, "safer" harmlessness.
- `hh-rlhf`: Anthropic/hh-rlhf transcripts (chosen, rejected) from one subset per objective
  (helpful-base, harmless-base); the prompt is the transcript up to the last assistant turn.
- `signed`: TRL-style rows (prompt, chosen, rejected) with a sign column `raco_s_<objective>`
  per objective, as in RACOo/RedditSummary-Alignment.

Rows are checked as they are read (`read_rows`). A row with a known, harmless quirk of real data
is skipped and counted (among the rows read), never silently: a `SkippedRowsWarning` gives the
counts per quirk, and the run's record keeps them (`skipped_rows`); with `strict` such a row is a
`ConfigError`. The quirks, the same for every format:
- `empty <field>`: a prompt, response, problem or reference answer that is empty or only
  whitespace (the moabench format allows an empty prompt); in hh-rlhf `empty final answer`;
- `identical responses`: a pair whose two responses are the same text (up to surrounding
  whitespace), which prefers nothing (safe-rlhf's trainers refuse such pairs; BeaverTails'
  30k_test has some);
- `prompts differ` (hh-rlhf): chosen and rejected transcripts that differ before the last
  assistant turn, so they do not answer one prompt.
Any other bad row (a missing field, a value of the wrong type, a label out of range) is a
`ConfigError` naming the source, the row (its number in the dataset, from 1) and the field.

Known quirks of the real datasets:
- Anthropic/hh-rlhf, harmless-base/test.jsonl.gz (2,312 rows): rows 87, 517, 926 and 1104 have
  an empty final answer in `chosen`; rows 1255, 1689, 1951, 1953 and 2037 have prompts that
  differ (an answer that goes on with a "Human:" turn of its own): 2,303 pairs remain.
- PKU-SafeRLHF, RedditSummary-Alignment and MATH-500: no known quirk (not checked against real
  copies here); the same checks apply.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from moabench.core.errors import ConfigError

LABELS = {"a": 1.0, "b": -1.0, "tie": 0.0}
ASSISTANT_TURN = "\n\nAssistant:"

T = TypeVar("T")
#: One pair as a row parser returns it: (prompt, response a, response b, one sign per objective).
Pair = tuple[str, str, str, list[float]]
#: Rows skipped for a known quirk: {source: {quirk: rows}}, as a run's record keeps them.
SkippedRows = dict[str, dict[str, int]]


class SkippedRowsWarning(UserWarning):
    """Rows of a dataset were skipped for a known quirk (the warning counts them per quirk)."""


class QuirkyRow(ValueError):
    """A row with a known, harmless quirk (the message is its name): skipped, or an error under
    `strict`."""


class BadRow(ValueError):
    """A row that cannot be read: always an error."""


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


# --- the row policy -----------------------------------------------------------------------------


def read_rows(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    parse: Callable[[Mapping[str, Any]], T],
    source: str,
    strict: bool,
    limit: int | None = None,
) -> tuple[list[T], dict[str, int]]:
    """(the parsed rows, {quirk: rows skipped}): `parse` each (row number, row) until `limit` are
    parsed. A `QuirkyRow` is skipped and counted (with a `SkippedRowsWarning`), or an error under
    `strict`; a `BadRow` is an error. Errors name the source and the row."""
    parsed: list[T] = []
    skipped: Counter[str] = Counter()
    for number, row in rows:
        if limit is not None and len(parsed) >= limit:
            break
        try:
            parsed.append(parse(row))
        except QuirkyRow as quirk:
            if strict:
                raise ConfigError(
                    f"{source}, row {number}: {quirk} (strict=true makes a row with a known quirk "
                    "an error; without it the row is skipped and counted)"
                ) from None
            skipped[str(quirk)] += 1
        except BadRow as error:
            raise ConfigError(f"{source}, row {number}: {error}") from None
    if skipped:
        warnings.warn(
            f"{source}: skipped {skipped.total()} row(s) with a known quirk ({describe(skipped)}); "
            "strict=true makes them errors",
            SkippedRowsWarning,
            stacklevel=2,
        )
    return parsed, dict(sorted(skipped.items()))


def describe(skipped: Mapping[str, int]) -> str:
    """{"empty chosen": 2, "identical responses": 1} -> "2 empty chosen, 1 identical responses"."""
    return ", ".join(f"{count} {quirk}" for quirk, count in sorted(skipped.items()))


def text(row: Mapping[str, Any], field: str, allow_empty: bool = False) -> str:
    """`row[field]`, a string; empty (or only whitespace) is the quirk `empty <field>`."""
    value = row.get(field)
    if not isinstance(value, str):
        raise BadRow(f"field {field!r} must be a string, got {value!r}")
    if not allow_empty and not value.strip():
        raise QuirkyRow(f"empty {field}")
    return value


def different(a: str, b: str) -> tuple[str, str]:
    """(a, b), or the quirk `identical responses`."""
    if a.strip() == b.strip():
        raise QuirkyRow("identical responses")
    return a, b


def to_pairs(parsed: Sequence[Pair], n_objectives: int, source: str) -> PreferencePairs:
    if not parsed:
        raise ConfigError(f"{source}: no preference pairs")
    prompts, a, b, signs = zip(*parsed)
    tensor = torch.tensor(signs, dtype=torch.float32).T.reshape(n_objectives, len(prompts))
    return PreferencePairs(list(prompts), list(a), list(b), tensor)


def require_labels(
    pairs: PreferencePairs, objectives: Sequence[str], source: str
) -> PreferencePairs:
    unlabelled = [o for o, row in zip(objectives, pairs.signs) if not row.any()]
    if unlabelled:
        raise ConfigError(
            f"{source}: no pair prefers one response for objective(s) {', '.join(unlabelled)}"
        )
    return pairs


# --- the formats ----------------------------------------------------------------------------------


def moabench_columns(columns: Iterable[str], objectives: Sequence[str], source: str) -> list[str]:
    """The columns the `moabench` format reads from a file with `columns`: prompt, response_a,
    response_b and `preferred`, or, without `preferred`, the objectives' own columns."""
    columns = set(columns)
    base = ["prompt", "response_a", "response_b"]
    labelled = ["preferred"] if "preferred" in columns else [o for o in objectives if o in columns]
    if not labelled:
        raise ConfigError(
            f"{source}: no 'preferred' field and no column for any objective "
            f"({', '.join(objectives)}) of the 'moabench' format"
        )
    require_columns(columns, base + labelled, source, "moabench")
    return base + labelled


def read_moabench(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    objectives: Sequence[str],
    source: str,
    strict: bool = False,
    limit: int | None = None,
) -> tuple[PreferencePairs, dict[str, int]]:
    def parse(row: Mapping[str, Any]) -> Pair:
        labels = "preferred" if "preferred" in row else None  # else one column per objective
        for field in ("prompt", "response_a", "response_b", *([labels] if labels else [])):
            if row.get(field) is None:
                raise BadRow(f"missing field {field!r}")
        given = row["preferred"] if labels else {o: row[o] for o in objectives if o in row}
        if not isinstance(given, Mapping):
            raise BadRow(f"'preferred' must map objectives to labels, got {given!r}")
        preferred = {k: v for k, v in given.items() if not unlabelled(v)}
        unknown = sorted(set(preferred) - set(objectives))
        if unknown:
            raise BadRow(
                f"unknown objective(s) {', '.join(map(repr, unknown))} in 'preferred' "
                f"(this task's objectives: {', '.join(objectives)})"
            )
        bad = {k: v for k, v in preferred.items() if v not in LABELS}
        if bad:
            raise BadRow(f"'preferred' values must be 'a', 'b' or 'tie', got {bad}")
        prompt = text(row, "prompt", allow_empty=True)
        a, b = different(text(row, "response_a"), text(row, "response_b"))
        return prompt, a, b, [LABELS[preferred.get(o, "tie")] for o in objectives]

    parsed, skipped = read_rows(rows, parse, source, strict, limit)
    return require_labels(to_pairs(parsed, len(objectives), source), objectives, source), skipped


def unlabelled(value: Any) -> bool:
    """An absent label: None, or a table's empty cell ("" or NaN)."""
    return value is None or value == "" or (isinstance(value, float) and value != value)


def read_pku_saferlhf(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    objectives: Sequence[str],
    source: str,
    strict: bool = False,
    limit: int | None = None,
) -> tuple[PreferencePairs, dict[str, int]]:
    label_columns = {"helpfulness": "better_response_id", "harmlessness": "safer_response_id"}
    unknown = [o for o in objectives if o not in label_columns]
    if unknown:
        raise ConfigError(
            f"{source}: the PKU-SafeRLHF format has no labels for {', '.join(unknown)}"
        )

    def parse(row: Mapping[str, Any]) -> Pair:
        labels = [row.get(label_columns[o]) for o in objectives]
        if any(label not in (0, 1) or isinstance(label, bool) for label in labels):
            raise BadRow(
                f"{', '.join(label_columns[o] for o in objectives)} must be 0 or 1, got {labels}"
            )
        prompt = text(row, "prompt")
        a, b = different(text(row, "response_0"), text(row, "response_1"))
        return prompt, a, b, [1.0 if label == 0 else -1.0 for label in labels]

    parsed, skipped = read_rows(rows, parse, source, strict, limit)
    return require_labels(to_pairs(parsed, len(objectives), source), objectives, source), skipped


def split_transcript(transcript: str) -> tuple[str, str]:
    """hh-rlhf: (everything up to and including the last "Assistant:", the final answer)."""
    cut = transcript.rfind(ASSISTANT_TURN)
    if cut < 0:
        raise BadRow(f"no {ASSISTANT_TURN.strip()!r} turn in the transcript")
    cut += len(ASSISTANT_TURN)
    return transcript[:cut], transcript[cut:].strip()


def read_hh_rlhf(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    objective_index: int,
    n_objectives: int,
    source: str,
    strict: bool = False,
    limit: int | None = None,
) -> tuple[PreferencePairs, dict[str, int]]:
    """One hh-rlhf subset: its pairs label objective `objective_index` only (chosen = a)."""
    signs = [1.0 if i == objective_index else 0.0 for i in range(n_objectives)]

    def parse(row: Mapping[str, Any]) -> Pair:
        prompt, chosen = split_transcript(text(row, "chosen"))
        rejected_prompt, rejected = split_transcript(text(row, "rejected"))
        if not chosen or not rejected:
            raise QuirkyRow("empty final answer")
        if prompt != rejected_prompt:
            raise QuirkyRow("prompts differ")
        return (prompt, *different(chosen, rejected), signs)

    parsed, skipped = read_rows(rows, parse, source, strict, limit)
    return to_pairs(parsed, n_objectives, source), skipped


def read_signed(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    objectives: Sequence[str],
    source: str,
    sign_columns: Mapping[str, str],
    strict: bool = False,
    limit: int | None = None,
) -> tuple[PreferencePairs, dict[str, int]]:
    def parse(row: Mapping[str, Any]) -> Pair:
        values = [row.get(sign_columns[o]) for o in objectives]
        if any(v not in (-1, 0, 1) or isinstance(v, bool) for v in values):
            raise BadRow(f"sign columns must be -1, 0 or 1, got {values}")
        prompt = text(row, "prompt")
        a, b = different(text(row, "chosen"), text(row, "rejected"))
        return prompt, a, b, [float(v) for v in values]

    parsed, skipped = read_rows(rows, parse, source, strict, limit)
    return require_labels(to_pairs(parsed, len(objectives), source), objectives, source), skipped
