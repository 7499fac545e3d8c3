"""The language side: tasks whose policy is a causal language model, trained on preference pairs
or online, at the tiny scale (offline, CPU) or the Hugging Face scales.

Modules, from the top down (each imports only those below it; see ARCHITECTURE.md):
- `task`: `LanguageTask`, the class a language task subclasses, and its hooks;
- `tiny`, `hub`: the scales, which build the problems the trainers take;
- `preference`, `online`: the trainers (DPO on pairs; sample, score and policy gradient);
- `training`, `params`, `setups`, `loading`, `pairs`, `capabilities`, `lm`, `advantages`: what
  they share.
"""

from moabench.language.params import LanguageParams
from moabench.language.setups import (
    LengthScorer,
    PaperSetup,
    RewardModelScorer,
    RuleScorer,
    RunningMeanLengthScorer,
)
from moabench.language.task import LanguageTask

__all__ = [
    "LanguageParams",
    "LanguageTask",
    "LengthScorer",
    "PaperSetup",
    "RewardModelScorer",
    "RuleScorer",
    "RunningMeanLengthScorer",
]
