"""Gradient caching (Gao et al., 2021): a large contrastive batch in small pieces of memory.

The loss needs every embedding of the batch at once, but the encoder's
activations need not all live at once. Step 1 embeds the batch chunk by chunk
without a graph; step 2 computes the loss on those embeddings and its gradient
with respect to each embedding; step 3 re-runs each chunk with a graph and
back-propagates that cached gradient through it. The parameter gradients equal
those of one big forward and backward of the same chunks, at the memory of one
chunk. With dropout on, each chunk's random state is replayed, so the two
passes agree; the masks (not their distribution) depend on the chunking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ragmix._extras import require

if TYPE_CHECKING:
    from torch import Tensor

Embed = Callable[[Any], "Tensor"]  # a chunk of inputs -> (n, D) embeddings


def _split(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def cached_backward(
    embed: Sequence[Embed], inputs: Sequence[Sequence[Any]], loss_fn: Callable[..., Tensor], *,
    chunk_size: int,
) -> Tensor:
    """Back-propagate ``loss_fn(*embeddings)`` into the encoders, ``chunk_size`` inputs at a time.

    ``embed[i]`` embeds a list of ``inputs[i]``'s items (e.g. the query tower
    and the passage tower); ``loss_fn`` receives one (n_i, D) tensor per
    input list. Gradients accumulate in the parameters (call
    ``optimizer.zero_grad()`` before) and in any parameter ``loss_fn`` owns
    (a learned temperature). Returns the loss, detached.
    """
    torch = require("torch", "models")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    if all(len(items) <= chunk_size for items in inputs):  # one chunk each: nothing to cache
        loss = loss_fn(*(fn(items) for fn, items in zip(embed, inputs)))
        loss.backward()
        return loss.detach()
    chunks = [_split(items, chunk_size) for items in inputs]
    states: list[list[Any]] = []
    reps: list[Tensor] = []
    with torch.no_grad():
        for fn, parts in zip(embed, chunks):
            states.append([])
            pieces = []
            for part in parts:
                states[-1].append(torch.get_rng_state())
                pieces.append(fn(part))
            reps.append(torch.cat(pieces).detach().requires_grad_(True))  # (n_i, D)
    loss = loss_fn(*reps)
    loss.backward()
    for fn, parts, rep, saved in zip(embed, chunks, reps, states):
        grads = rep.grad.split([len(p) for p in parts])
        for part, grad, state in zip(parts, grads, saved):
            current = torch.get_rng_state()
            torch.set_rng_state(state)  # replay this chunk's dropout
            fn(part).backward(grad)
            torch.set_rng_state(current)
    return loss.detach()
