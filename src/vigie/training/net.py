"""The tabular net: embeddings for categoricals, an MLP over them and the numeric block."""

from __future__ import annotations

import torch
from torch import nn


def embedding_dim(cardinality: int, cap: int) -> int:
    """A small embedding for a small vocabulary: about half its size, at most ``cap``."""
    return max(1, min(cap, (cardinality + 1) // 2))


class TabularNet(nn.Module):
    """Embeddings (one per categorical feature, index 0 = OOV) + MLP, one raw output.

    Args:
        cardinalities: Embedding table sizes, OOV bucket included.
        numeric_width: Width of the numeric block (scaled values and missing indicators).
        hidden: Sizes of the hidden layers.
        dropout: Dropout after each hidden layer.
        max_embedding_dim: Cap on each embedding's width.
    """

    def __init__(
        self,
        *,
        cardinalities: list[int],
        numeric_width: int,
        hidden: tuple[int, ...],
        dropout: float,
        max_embedding_dim: int,
    ) -> None:
        super().__init__()
        dims = [embedding_dim(c, max_embedding_dim) for c in cardinalities]
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(cardinalities, dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = sum(dims) + numeric_width
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, cats: torch.Tensor, nums: torch.Tensor) -> torch.Tensor:
        """Raw score ``[N]`` (a logit for a classifier, a standardised delay for a regressor)."""
        parts = [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
        out: torch.Tensor = self.mlp(torch.cat([*parts, nums], dim=1))
        return torch.squeeze(out, 1)


class OutputHead(nn.Module):
    """The net plus its output transform: sigmoid, or de-standardisation to minutes."""

    def __init__(self, net: TabularNet, *, classifier: bool, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.classifier = classifier
        self.mean = mean
        self.std = std

    def forward(self, cats: torch.Tensor, nums: torch.Tensor) -> torch.Tensor:
        """Probability or delay minutes, ``[N]``."""
        raw: torch.Tensor = self.net(cats, nums)
        if self.classifier:
            return torch.sigmoid(raw)
        return raw * self.std + self.mean
