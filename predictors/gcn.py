"""The BRP-NAS graph convolutional network, in PyTorch (training only; serving runs the same
weights in numpy, predictors/forward.py).

Eagle's predictor: graph-conv layers, each followed by layer norm, ReLU and dropout; the
prediction is a linear map of the global node's embedding. Each layer here passes messages over
two adjacencies (the live ops' and every op's; GraphConv), where Eagle's has one.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Gcn", "GraphConv"]


class GraphConv(nn.Module):
    """Two relations: ``[adj_live @ h, adj @ h] @ W + b``, i.e. messages among live ops and
    messages among all ops, each with its own half of ``W`` (predictors.features)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2 * n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        # the live-ops half as Eagle's layer; the every-op half starts at zero, so an untrained
        # network reads the pruned network and only a device's data that says dead ops cost
        # time moves it off
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight[:n_in])
            self.weight[n_in:].zero_()

    def forward(self, x: torch.Tensor, adj: torch.Tensor, adj_live: torch.Tensor) -> torch.Tensor:
        messages = torch.cat([torch.bmm(adj_live, x), torch.bmm(adj, x)], dim=-1)
        return messages @ self.weight + self.bias


class Gcn(nn.Module):
    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            GraphConv(n_features if i == 0 else hidden, hidden) for i in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, adj_live: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.dropout(torch.relu(norm(conv(x, adj, adj_live))))
        out: torch.Tensor = self.head(x[:, 0]).squeeze(-1)
        return out
