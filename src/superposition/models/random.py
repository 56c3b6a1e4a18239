"""Per-instance, per-parameter generators for initial weights."""

from __future__ import annotations

import torch


def generator(seed: int, name: str) -> torch.Generator:
    """The generator of parameter `name` of the instance with `seed` (independent of other instances)."""
    from ..data import STREAM_INIT, derive_seed

    salt = sum(ord(c) << (8 * i) for i, c in enumerate(name))
    return torch.Generator().manual_seed(derive_seed(seed, STREAM_INIT, salt) & ((1 << 63) - 1))


def torch_seed(seed: int) -> int:
    """A seed for torch's global generator while a user's module initialises itself."""
    from ..data import STREAM_INIT, derive_seed

    return derive_seed(seed, STREAM_INIT, 0xC057) & ((1 << 63) - 1)
