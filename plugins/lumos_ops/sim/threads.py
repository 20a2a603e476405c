"""Pin the torch CPU thread count while rendering, so outputs are byte-reproducible.

The renderer's float32 FFTs round differently with different thread counts; the differences
(~1e-8 of the flux) change Poisson draws downstream. Simulations therefore render with a fixed,
configured number of threads and restore the caller's setting afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; restore the previous count on exit."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
