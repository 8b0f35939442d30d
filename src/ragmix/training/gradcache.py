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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ragmix._extras import require

if TYPE_CHECKING:
    from torch import Tensor

Embed = Callable[[Any], "Tensor"]  # a chunk of inputs -> (n, D) embeddings


def _split(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class RandomState:
    """The random generators a chunk's forward pass draws its dropout from, to replay it.

    The CPU generator, and each CUDA device's own: those the chunk's tensors
    live on and the ``devices`` given (an encoder that tokenises text itself
    gets inputs holding no tensor). This is GradCache's ``RandContext``, as
    sentence-transformers keeps it.
    """

    def __init__(self, inputs: Any, devices: Sequence[Any] = ()) -> None:
        torch = require("torch", "models")
        from torch.utils.checkpoint import get_device_states

        self.cpu = torch.get_rng_state()
        self.device_ids, self.device_states = get_device_states(inputs)
        for device in map(torch.device, devices):
            if device.type != "cuda":
                continue
            index = device.index if device.index is not None else torch.cuda.current_device()
            if index not in self.device_ids:
                self.device_ids.append(index)
                self.device_states.append(torch.cuda.get_rng_state(index))

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the saved states; the generators are back as they were after."""
        torch = require("torch", "models")
        from torch.utils.checkpoint import set_device_states

        with torch.random.fork_rng(devices=self.device_ids):
            torch.set_rng_state(self.cpu)
            set_device_states(self.device_ids, self.device_states)
            yield


def cached_backward(
    embed: Sequence[Embed], inputs: Sequence[Sequence[Any]], loss_fn: Callable[..., Tensor], *,
    chunk_size: int, devices: Sequence[Any] = (),
) -> Tensor:
    """Back-propagate ``loss_fn(*embeddings)`` into the encoders, ``chunk_size`` inputs at a time.

    ``embed[i]`` embeds a list of ``inputs[i]``'s items (e.g. the query tower
    and the passage tower); ``loss_fn`` receives one (n_i, D) tensor per
    input list. Gradients accumulate in the parameters (call
    ``optimizer.zero_grad()`` before) and in any parameter ``loss_fn`` owns
    (a learned temperature). ``devices`` are where the encoders run, when
    the inputs are not tensors there (texts): their generators are replayed
    too. Returns the loss, detached.
    """
    torch = require("torch", "models")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    if all(len(items) <= chunk_size for items in inputs):  # one chunk each: nothing to cache
        loss = loss_fn(*(fn(items) for fn, items in zip(embed, inputs)))
        loss.backward()
        return loss.detach()
    chunks = [_split(items, chunk_size) for items in inputs]
    states: list[list[RandomState]] = []
    reps: list[Tensor] = []
    with torch.no_grad():
        for fn, parts in zip(embed, chunks):
            states.append([])
            pieces = []
            for part in parts:
                states[-1].append(RandomState(part, devices))
                pieces.append(fn(part))
            reps.append(torch.cat(pieces).detach().requires_grad_(True))  # (n_i, D)
    loss = loss_fn(*reps)
    loss.backward()
    for fn, parts, rep, saved in zip(embed, chunks, reps, states):
        grads = rep.grad.split([len(p) for p in parts])
        for part, grad, state in zip(parts, grads, saved):
            with state.replay():  # this chunk's dropout, as in the first pass
                fn(part).backward(grad)
    return loss.detach()
