"""The paper's MLP (784-256-128-10, sigmoid hidden units, log-softmax + NLL) with explicit backpropagation.

Back-propagation is written out (no autograd) because the analog rules need every sample's layer input x
and error d: with the mean NLL over a batch of B, the output error is ``d = (softmax(z) - onehot(y)) / B``
(the 1/B is carried in d, as in aihwkit), hidden errors ``d_l = (d_{l+1} W_{l+1}[:, :-1]) * h (1 - h)``.
All errors are computed with the weights before the update, then every layer updates.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .algorithms import Layer
from .tile import append_bias


class MLP:
    """Fully connected layers with sigmoid hidden units and a log-softmax output."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers

    def forward(self, x: Tensor, phase: str = "forward") -> tuple[list[Tensor], Tensor]:
        """Inputs of every layer (with the bias column where the layer's ``bias_input`` asks for it) and the output
        log-probabilities (``phase``: training ``forward`` or ``eval``, for the layers' read counters)."""
        inputs = []
        h = x
        for index, layer in enumerate(self.layers):
            inputs.append(append_bias(h) if layer.bias_input else h)
            z = layer.forward(inputs[-1], phase)
            h = torch.sigmoid(z) if index < len(self.layers) - 1 else torch.log_softmax(z, dim=1)
        return inputs, h

    def predict(self, x: Tensor, batch_size: int) -> Tensor:
        """Predicted class of every row of ``x``, evaluated in chunks of ``batch_size``."""
        return torch.cat([self.forward(chunk, "eval")[1].argmax(dim=1) for chunk in x.split(batch_size)])

    def train_step(self, x: Tensor, y: Tensor, lr: float, step: int) -> float:
        """One mini-batch of SGD with the layers' own update rules; returns the mean NLL before the update."""
        inputs, log_p = self.forward(x)
        batch = x.shape[0]
        loss = -log_p[torch.arange(batch), y].mean()
        d = log_p.exp()
        d[torch.arange(batch), y] -= 1.0
        d /= batch
        errors = [d]
        for index in range(len(self.layers) - 1, 0, -1):
            h = inputs[index][:, :-1] if self.layers[index].bias_input else inputs[index]
            d = self.layers[index].backward(d) * h * (1.0 - h)
            errors.insert(0, d)
        for layer, x_l, d_l in zip(self.layers, inputs, errors):
            layer.update(x_l, d_l, lr, step)
        return float(loss)
