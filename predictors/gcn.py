"""The BRP-NAS graph convolutional network, in PyTorch (training only; serving runs the same
weights in numpy, predictors/forward.py).

Eagle's predictor: graph-conv layers ``adj @ (h @ W) + b``, each followed by layer norm, ReLU
and dropout; the prediction is a linear map of the global node's embedding.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Gcn", "GraphConv"]


class GraphConv(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return torch.bmm(adj, x @ self.weight) + self.bias


class Gcn(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            GraphConv(n_features if i == 0 else hidden, hidden) for i in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.dropout(torch.relu(norm(conv(x, adj))))
        out: torch.Tensor = self.head(x[:, 0]).squeeze(-1)
        return out
