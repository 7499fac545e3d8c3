"""Loading the paper scale's models and datasets through the normal Hugging Face code paths.

Every name may be a Hub id or a local path (a `save_pretrained` / `save_to_disk` folder, a copy of
a Hub repository, or a JSON/JSONL/CSV/Parquet file). Nothing falls back silently: a load that fails
raises a `ConfigError` saying what was being loaded, why it failed, and how to point moabench at a
local copy. transformers, peft and datasets are imported inside the functions (paper scale only).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from moabench.core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

T = TypeVar("T")

DATA_FILE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_or_explain(
    what: str, name: str, parameter: str, load: Callable[[], T], repo_type: str = "model"
) -> T:
    """`load()`, or a `ConfigError` naming `what` failed to load and how to use a local copy."""
    try:
        return load()
    except (OSError, ValueError, FileNotFoundError, ConnectionError) as error:
        if Path(name).exists():
            raise ConfigError(
                f"{what} {name!r} (a local path) could not be loaded: {error}"
            ) from None
        if is_a_path(name):
            raise ConfigError(
                f"{what} {name!r}: no such file or folder (`{parameter}` takes a local path or "
                "a Hugging Face Hub id, NAME or OWNER/NAME)"
            ) from None
        flag = " --repo-type dataset" if repo_type == "dataset" else ""
        field, _, key = parameter.partition(".")  # reward_models.helpfulness: a dict entry
        value = f"'{json.dumps({key: 'DIR'})}'" if key else "DIR"
        raise ConfigError(
            f"{what} {name!r} could not be loaded from the Hugging Face Hub ({first_line(error)}). "
            f"If this machine is offline, download it where the Hub is reachable (for instance "
            f"`hf download {name}{flag} --local-dir DIR`), copy DIR here and pass "
            f"`--task-param {field}={value}`; or fill the Hugging Face cache (HF_HOME) and set "
            f"HF_HUB_OFFLINE=1."
        ) from None


def is_a_path(name: str) -> bool:
    """Whether `name` can only be a local path: a Hub id is NAME or OWNER/NAME."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def load_causal_lm(
    name: str, parameter: str = "policy", dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal language model (weights in `dtype`; None: the checkpoint's) and its tokenizer
    (pad token set, left padding for generation); a model of another kind (a classifier, a
    masked LM) is a `ConfigError`."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = load_or_explain("model", name, parameter, lambda: AutoConfig.from_pretrained(name))
    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    architectures = config.architectures or []
    if architectures and not set(architectures) & causal_classes:
        raise ConfigError(
            f"{parameter} {name!r} is not a causal language model: its architecture is "
            f"{', '.join(architectures)}; pass a model such as GPT2LMHeadModel or LlamaForCausalLM"
        )
    if not architectures and config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"{parameter} {name!r} ({config.model_type}) is not a causal language model"
        )
    return load_causal_model(name, parameter, dtype), load_tokenizer(name, parameter)


def load_causal_model(
    name: str, parameter: str = "policy", dtype: torch.dtype | None = None
) -> PreTrainedModel:
    """The weights of a causal language model (a fully fine-tuned policy kept by moabench has no
    tokenizer beside it: it reads its base policy's)."""
    from transformers import AutoModelForCausalLM

    return load_or_explain(
        "model", name, parameter, lambda: AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    )


def load_tokenizer(name: str, parameter: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = load_or_explain(
        "tokenizer", name, parameter, lambda: AutoTokenizer.from_pretrained(name)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_sequence_classifier(
    name: str, parameter: str, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A reward model or classifier (`AutoModelForSequenceClassification`, or a safe-rlhf
    `...ForScore` model such as beaver's), in eval mode, weights in `dtype` (None: the
    checkpoint's). A checkpoint whose head is missing (so
    transformers would initialise it at random) is a `ConfigError`, never a silently random
    reward."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = load_or_explain(
        "reward model", name, parameter, lambda: AutoConfig.from_pretrained(name)
    )
    options: dict[str, Any] = {}
    if any(a.endswith("ForScore") for a in config.architectures or []):
        # safe-rlhf's score models (beaver-7b-v1.0-reward / -cost): the backbone plus a linear
        # `score_head` read at the last non-padding token, which is what transformers'
        # ...ForSequenceClassification computes with its `score` layer.
        options = {
            "key_mapping": {r"^score_head": "score"},
            "num_labels": getattr(config, "score_dim", 1),
        }
    model, info = load_or_explain(
        "reward model",
        name,
        parameter,
        lambda: AutoModelForSequenceClassification.from_pretrained(
            name, output_loading_info=True, dtype=dtype, **options
        ),
    )
    if info["missing_keys"]:
        raise ConfigError(
            f"reward model {name!r}: the checkpoint lacks weights for {sorted(info['missing_keys'])[:3]}; "
            "it is not a sequence-classification model that transformers can load, and its head "
            "would be random"
        )
    model.eval()
    tokenizer = load_tokenizer(name, parameter)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_rows(name: str, parameter: str, split: str, data_dir: str | None = None) -> Dataset:
    """A dataset split: a `save_to_disk` folder, a data file (by suffix), or a Hub id / local
    repository copy through `load_dataset(name, data_dir=..., split=...)` (a copy of
    Anthropic/hh-rlhf holds `<data_dir>/<split>.jsonl.gz`, as its GitHub repository does)."""
    import datasets

    path = Path(name)

    def load() -> Any:
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        if path.suffix in DATA_FILE_FORMATS and path.is_file():
            return load_data_file(path)
        return datasets.load_dataset(name, data_dir=data_dir, split=split)

    datasets.disable_progress_bars()
    what = f"subset {data_dir!r} of dataset" if data_dir else "dataset"
    return load_or_explain(what, name, parameter, load, repo_type="dataset")


def load_data_file(path: Path) -> Dataset:
    """The rows of a JSON, JSON Lines, CSV or Parquet file; a `ConfigError` for a file without
    rows, or naming the line that is not a JSON object."""
    import datasets

    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its error log: ours says it
    try:
        rows = datasets.load_dataset(
            DATA_FILE_FORMATS[path.suffix], data_files=str(path), split="train"
        )
    except Exception as error:  # noqa: BLE001 - datasets' errors (StopIteration on an empty file)
        raise ConfigError(data_file_fault(path) or first_line(error)) from None
    finally:
        datasets.logging.set_verbosity(verbosity)
    if len(rows) == 0:
        raise ConfigError("the file has no rows")
    return rows


def data_file_fault(path: Path) -> str | None:
    """What is wrong with a text data file: no rows, or (JSON Lines) its first line that is not
    a JSON object ("line 3, column 12: ..."); None when nothing is found (or for Parquet)."""
    if path.suffix == ".parquet":
        return None
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        return f"not UTF-8 text ({error.reason} at byte {error.start})"
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) <= (1 if path.suffix == ".csv" else 0):  # a CSV file's first line: its header
        return "the file has no rows"
    if path.suffix == ".csv":
        return None
    try:
        if isinstance(json.loads(text), (list, dict)):  # one JSON document (an array of rows)
            return None
    except ValueError:  # JSON Lines, or a fault
        pass
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number}, column {error.colno}: not valid JSON ({error.msg})"
        if not isinstance(row, dict):
            return f"line {number}: expected a JSON object, got {type(row).__name__}"
    return None


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def with_lora(model: PreTrainedModel, rank: int) -> PreTrainedModel:
    """`model` with LoRA adapters of `rank` on peft's default target modules for its
    architecture (rank 0: the model itself, fully trainable)."""
    if rank == 0:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft's notice that GPT-2's Conv1D layers are transposed
        warnings.filterwarnings("ignore", message="fan_in_fan_out", category=UserWarning)
        return get_peft_model(model, config)


def load_adapter(model: Any, path: str, name: str, device: str) -> None:
    """The LoRA adapter saved in `path` (peft's `save_pretrained`) added to the peft `model` as
    `name`, on `device`, its base weights shared with the model's other adapters."""
    load_or_explain(
        "LoRA adapter", path, "policy",
        lambda: model.load_adapter(path, adapter_name=name, torch_device=device),
    )  # fmt: skip
