"""The data of a training run: MNIST (``ferrolib.mnist.load_mnist``) or a small synthetic task, cut to the
configured limits (``load_data``)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from .config import TrainConfig


def _synthetic_digits(seed: int) -> SimpleNamespace:
    """A small labelled synthetic 10-class task shaped like MNIST (784 pixels in [0, 1], ~80 % zeros)."""
    generator = torch.Generator().manual_seed(1_000 + seed)
    prototypes = (torch.rand(10, 784, generator=generator) < 0.2).float()

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=generator)
        flips = torch.rand(n, 784, generator=generator) < 0.05
        x = torch.where(flips, 1.0 - prototypes[y], prototypes[y]) * torch.rand(n, 784, generator=generator).sqrt()
        return x, y

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = split(2000), split(500), split(500)
    return SimpleNamespace(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x, test_y=test_y,
                           source={"kind": "synthetic", "generator": "ferrolib.training.run._synthetic_digits",
                                   "seed": seed},
                           label="synthetic 10-class digits-like task (not MNIST)")


def load_data(config: TrainConfig) -> Any:
    """MNIST (``ferrolib.mnist.load_mnist``) or the synthetic task, cut to the configured limits."""
    if config.data == "synthetic":
        data = _synthetic_digits(config.seed)
    else:
        from ..mnist import load_mnist

        data = load_mnist(source=config.data, split=config.split)
    from ..mnist import stratified_split

    out = SimpleNamespace(source=data.source, label=data.label)
    for split, limit in (("train", config.train_limit), ("val", config.eval_limit), ("test", config.eval_limit)):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if limit is not None and limit < len(y):
            # a stratified, seed-independent subset: the stored splits may be ordered by class
            _, keep = stratified_split(y.numpy(), limit / len(y), seed=0)
            x, y = x[torch.from_numpy(keep)], y[torch.from_numpy(keep)]
        setattr(out, f"{split}_x", x)
        setattr(out, f"{split}_y", y)
    return out


__all__ = ["load_data"]
