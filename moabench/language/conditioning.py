"""How a policy reads a vector c that is not text: a preference w (a preference-conditioned
policy) or target scores (Rewards-in-Context).

`Conditioning` adds `c @ E` to every input embedding, where `E` (len(c) x d, the model's
parameter `conditioning_embedding`) is learned and starts at zero, so a conditioned policy starts
as the policy it was made from and its reference log-probabilities do not depend on c. `set(c)`
chooses the vector of the next forward passes: one for every row, shape (k,), or one per row,
shape (rows, k). At the tiny scale this stands for writing c into the prompt (RiC writes its
scores as text; Panacea writes w into LoRA singular values), which a word-level vocabulary
without number tokens cannot do; at the Hugging Face scales it is a learned soft prompt beside
the LoRA adapters (`unconditioned` keeps it out of a reference's forward passes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


class Conditioning:
    """The conditioning of `model` on vectors of `size` entries (see the module docstring)."""

    FILE = "conditioning_embedding.pt"

    def __init__(self, model: torch.nn.Module, size: int) -> None:
        embeddings = model.get_input_embeddings()
        model.conditioning_embedding = torch.nn.Parameter(  # float32, as LoRA adapters are
            torch.zeros(size, embeddings.embedding_dim, device=embeddings.weight.device)
        )
        model.conditioning = self
        self.model, self.vector = model, torch.full((size,), 1.0 / size)
        self.enabled = True
        embeddings.register_forward_hook(self._add)

    def _add(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return output
        weights = self.model.conditioning_embedding
        shift = (self.vector.to(weights) @ weights).to(output.dtype)
        return output + (shift[:, None, :] if shift.dim() == 2 else shift)

    def set(self, vector) -> None:  # noqa: ANN001 - a sequence of floats, or rows of them
        self.vector = torch.as_tensor(vector, dtype=torch.float32)

    def save(self, path: Path) -> None:
        torch.save(self.model.conditioning_embedding.detach().clone(), path / self.FILE)

    @classmethod
    def load(cls, model: torch.nn.Module, path: Path) -> Conditioning | None:
        """The conditioning kept beside a saved policy, attached to `model`; None if none is."""
        if not (path / cls.FILE).exists():
            return None
        weights = torch.load(path / cls.FILE)
        conditioning = cls(model, weights.shape[0])
        with torch.no_grad():
            model.conditioning_embedding.copy_(weights)
        return conditioning


@contextmanager
def unconditioned(model: torch.nn.Module) -> Iterator[None]:
    """`model`'s forward passes without its conditioning (if any) for the duration: the
    reference policy's, which reads no vector."""
    conditioning = getattr(model, "conditioning", None)
    if conditioning is None:
        yield
        return
    conditioning.enabled = False
    try:
        yield
    finally:
        conditioning.enabled = True
