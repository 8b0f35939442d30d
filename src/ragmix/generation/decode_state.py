"""N prompts decoded in lockstep with one KV cache: HFGenerator's Decoder, under greedy and RAG.

Row r holds one (hypothesis, passage) pair. ``advance`` feeds one token per
row and returns every row's next-token log-probabilities; ``select`` keeps,
reorders or repeats rows (beam search), cache and all. Causal models get
left-padded prompts with explicit position ids; seq2seq models encode each
prompt once and decode from the model's decoder start tokens.

A step costs one forward pass of the model over N new tokens; on a CPU, its
weight matmuls take about 80% of it (profiled on SmolLM2-135M), so what is
left to save here is small: the attention mask lives in a buffer that grows
by doubling (no copy per step), it is not passed at all while no row is
padded (one prompt, as greedy ``generate`` decodes, or prompts of one length:
the model then takes its unmasked causal path), and the forward's keyword
arguments are worked out once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ragmix._extras import require
from ragmix.generation._batching import pad

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.hf import HFGenerator


class _Rows(NamedTuple):
    """A cache not yet gathered: rows ``rows`` of ``base``'s layers, from column ``cut`` on."""

    base: list  # [(keys, values)] per layer, (B, H, L, D): a shared step's whole cache
    rows: Tensor  # (N,)
    cut: int


class DecodeState:
    """A batch of prompts mid-decoding; ``next_lp`` (N, V) is each row's next-token log-probs.

    The :class:`~ragmix.generation.base.Decoder` of :class:`HFGenerator`
    (its ``start_decoding``).
    """

    def __init__(self, gen: HFGenerator, prompts: Sequence[Sequence[int]],
                 decoder_prefix: Sequence[int] | None = None) -> None:
        torch = require("torch", "models")
        self.gen, self.model = gen, gen.model
        self.seq2seq = gen.is_encoder_decoder
        if self.seq2seq:
            enc_ids, enc_mask, _ = pad([list(p) for p in prompts], gen.pad_id, left=False)
            self.enc_mask = torch.from_numpy(enc_mask)  # (N, P)
            self.encoded = self.model.get_encoder()(input_ids=torch.from_numpy(enc_ids),
                                                    attention_mask=self.enc_mask)
            prefix = gen.decoder_prefix if decoder_prefix is None else list(decoder_prefix)
            step = torch.tensor([prefix] * len(prompts))  # (N, prefix)
            self.prefix = list(prefix)
            self.decoded = step.new_zeros(len(prompts), 0)  # (N, steps): for extend
            self.cache = None
            self.next_lp = self._decoder_step(step)
        else:
            ids, mask_np, _ = pad([list(p) for p in prompts], gen.pad_id, left=True)
            mask = torch.from_numpy(mask_np)  # (N, L)
            self._mask_buf, self._width = mask, mask.shape[1]  # (N, capacity): see mask
            self.padded = not bool(mask.all())
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (N, L)
            self.next_pos = positions[:, -1] + 1  # (N,)
            self.cache = None
            params = gen.forward_params
            self._step_kwargs: dict[str, Any] = {"use_cache": True}
            if "logits_to_keep" in params:
                self._step_kwargs["logits_to_keep"] = 1
            self._positions = "position_ids" in params
            self.next_lp = self._causal_step(torch.from_numpy(ids), positions)

    _pending: _Rows | None = None  # set by advance_together; ``cache`` gathers it when read

    @property
    def cache(self) -> Any:
        """The KV cache (a transformers ``Cache``), or None before the first forward pass."""
        if self._pending is not None:
            base, rows, cut = self._pending
            self._cache = cache_of([(k[:, :, cut:].index_select(0, rows),
                                     v[:, :, cut:].index_select(0, rows)) for k, v in base])
            self._pending = None
        return self._cache

    @cache.setter
    def cache(self, value: Any) -> None:
        self._cache, self._pending = value, None

    @property
    def rows(self) -> int:
        return self.next_lp.shape[0]

    @property
    def mask(self) -> Tensor:
        """(N, L) causal attention mask: 1 for the prompt and answer tokens, 0 for padding."""
        return self._mask_buf[:, : self._width]

    def _append_mask(self, columns: Tensor) -> None:
        """Add ``columns`` (N, S) to the mask, in place; the buffer doubles when full."""
        torch = require("torch", "models")
        width, extra = self._width, columns.shape[1]
        if width + extra > self._mask_buf.shape[1]:
            grown = self._mask_buf.new_zeros(self.rows, 2 * (width + extra))
            grown[:, :width] = self.mask
            self._mask_buf = grown
        self._mask_buf[:, width : width + extra] = columns
        self._width = width + extra
        self.padded = self.padded or not bool(torch.all(columns))

    def _causal_step(self, ids: Tensor, positions: Tensor) -> Tensor:
        kwargs = dict(self._step_kwargs)
        if self._positions:
            kwargs["position_ids"] = positions
        # An all-ones mask changes no number, but building it costs each step.
        mask = self.mask if self.padded else None
        out = self.model(input_ids=ids, attention_mask=mask, past_key_values=self.cache, **kwargs)
        self.cache = out.past_key_values
        return out.logits[:, -1].float().log_softmax(-1)  # (N, V)

    def _decoder_step(self, step: Tensor) -> Tensor:
        out = self.model(encoder_outputs=self.encoded, attention_mask=self.enc_mask,
                         decoder_input_ids=step, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1].float().log_softmax(-1)  # (N, V)

    def advance(self, tokens: Tensor) -> Tensor:
        """Append ``tokens`` (N,) to the rows; returns and keeps the new ``next_lp`` (N, V)."""
        torch = require("torch", "models")
        step = tokens.reshape(-1, 1).long()  # (N, 1)
        if self.seq2seq:
            self.decoded = torch.cat([self.decoded, step], dim=1)
            self.next_lp = self._decoder_step(step)
        else:
            self._append_mask(step.new_ones(self.rows, 1))
            positions = self.next_pos[:, None]  # (N, 1)
            self.next_pos = self.next_pos + 1
            self.next_lp = self._causal_step(step, positions)
        return self.next_lp

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (M,), in that order; a row may be repeated (beam search)."""
        index = index.long()
        if self._pending is not None:  # still rows of a shared step's cache: no copy yet
            self._pending = self._pending._replace(rows=self._pending.rows.index_select(0, index))
        elif self.cache is not None:
            self.cache.reorder_cache(index)
        self._select_uncached(index)

    def _select_uncached(self, index: Tensor) -> None:
        """``select`` of everything but the KV cache."""
        self.next_lp = self.next_lp.index_select(0, index)
        if self.seq2seq:
            self.decoded = self.decoded.index_select(0, index)
            self.enc_mask = self.enc_mask.index_select(0, index)
            hidden = self.encoded.last_hidden_state.index_select(0, index)
            self.encoded = type(self.encoded)(last_hidden_state=hidden)
        else:
            self._mask_buf = self._mask_buf.index_select(0, index)  # a copy: forks stay apart
            self.next_pos = self.next_pos.index_select(0, index)

    def fork(self, index: Tensor) -> DecodeState:
        """A copy holding rows ``index`` (M,); this state is left as it was."""
        index = index.long()
        other = copy.copy(self)
        layers = plain_layers(self.cache)
        if layers is None:
            other.cache = copy.deepcopy(self.cache)
            other.select(index)
            return other
        # only the rows kept are copied (a deep copy of a view would copy all it views)
        other.cache = cache_of([(k.index_select(0, index), v.index_select(0, index))
                                for k, v in layers])
        other._select_uncached(index)
        return other

    def extend(self, continuations: Sequence[Sequence[int]]) -> Tensor:
        """Teacher-force one continuation per row; returns their token log-probs (N, S).

        Reuses the cached prompts, so only the continuation tokens are
        computed. Positions past a row's continuation hold 0. The state is
        spent afterwards (its cache holds the padded continuations).
        """
        torch = require("torch", "models")
        width = max(len(c) for c in continuations)
        ids_np, mask_np, _ = pad([list(c) for c in continuations], self.gen.pad_id, left=False)
        ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np).bool()  # (N, S)
        if self.seq2seq:
            # the decoder reads its start tokens and the answer so far again (no cache)
            start = torch.cat([torch.tensor([self.prefix] * self.rows), self.decoded], dim=1)
            out = self.model(encoder_outputs=self.encoded, attention_mask=self.enc_mask,
                             decoder_input_ids=torch.cat([start, ids[:, :-1]], dim=1),
                             use_cache=False)
            logits = out.logits[:, start.shape[1] - 1 :]  # (N, S, V)
            lp = logits.float().log_softmax(-1)
        else:
            self._append_mask(mask.long())
            positions = self.next_pos[:, None] + torch.arange(width)[None, :]  # (N, S)
            kwargs = {"position_ids": positions} if self._positions else {}
            out = self.model(input_ids=ids, attention_mask=self.mask if self.padded else None,
                             past_key_values=self.cache, use_cache=True, **kwargs)
            rest = out.logits[:, :-1].float().log_softmax(-1)  # (N, S - 1, V)
            lp = torch.cat([self.next_lp[:, None], rest], dim=1)  # (N, S, V)
        picked = lp.gather(-1, ids[:, :, None]).squeeze(-1)  # (N, S)
        return picked.masked_fill(~mask, 0.0)


def advance_together(states: Sequence[DecodeState], tokens: Sequence[Tensor]) -> None:
    """Advance every state by its ``tokens`` (N_i,), as ``state.advance`` would, in one pass.

    The states are separate batches (different requests) over one causal
    model: their rows are stacked, each state's mask and KV cache left-padded
    to the longest, the model reads all the new tokens in one forward pass,
    and each state takes its rows back. Positions are explicit and padding is
    masked, so a state's numbers are those it gets alone (to float rounding).
    States that cannot share a pass (seq2seq ones, other models, caches other
    than plain :class:`DynamicCache` layers) advance one by one. Nothing
    changes if it raises.
    """
    torch = require("torch", "models")
    if len(states) != len(tokens):
        raise ValueError(f"got {len(states)} states but {len(tokens)} token tensors; give one "
                         "tensor of tokens per state")
    for i, (state, step) in enumerate(zip(states, tokens)):
        if step.numel() != state.rows:
            raise ValueError(f"state {i} has {state.rows} rows but got {step.numel()} tokens; "
                             "give one token per row")
    first = states[0]
    if len(states) == 1 or any(s.seq2seq or s.model is not first.model for s in states):
        for state, step in zip(states, tokens):
            state.advance(step)
        return
    shared = _shared_rows(states)
    layers = None if shared is not None else [plain_layers(state.cache) for state in states]
    if layers is not None and any(found is None for found in layers):
        for state, step in zip(states, tokens):
            state.advance(step)
        return
    widths = [state._width for state in states]
    width, sizes = max(widths), [state.rows for state in states]
    ids = torch.cat([step.reshape(-1, 1).long() for step in tokens])  # (N, 1)
    mask = torch.zeros(len(ids), width + 1, dtype=first.mask.dtype)  # (N, width + 1)
    offset = 0
    for state, w, n in zip(states, widths, sizes):
        mask[offset : offset + n, width - w : width] = state.mask  # right-aligned
        offset += n
    mask[:, width] = 1
    padded = any(w != width or s.padded for s, w in zip(states, widths))
    kwargs = dict(first._step_kwargs)
    if first._positions:
        kwargs["position_ids"] = torch.cat([state.next_pos for state in states])[:, None]
    # the states' rows of the last shared step: one gather; else pad and stack
    cache = cache_of(shared if shared is not None else _stacked(layers, widths, width))
    out = first.model(input_ids=ids, attention_mask=mask if padded else None,
                      past_key_values=cache, **kwargs)
    next_lp = out.logits[:, -1].float().log_softmax(-1)  # (N, V)
    grown = plain_layers(out.past_key_values)  # (N, H, width + 1, D) per layer
    offset = 0
    for state, w, n in zip(states, widths, sizes):
        rows = torch.arange(offset, offset + n)
        state.cache = None
        state._pending = _Rows(grown, rows, width - w)  # gathered when read, if ever
        state.next_lp = next_lp[offset : offset + n]
        state._append_mask(ids.new_ones(n, 1))
        state.next_pos = state.next_pos + 1
        offset += n


def _shared_rows(states: Sequence[DecodeState]) -> list[tuple[Tensor, Tensor]] | None:
    """If every state's cache is rows of one shared step's cache, their stacked cache, cut to
    the widest state (one gather, their padding as it was); else None."""
    pending = [state._pending for state in states]
    if any(p is None or p.base is not pending[0].base for p in pending):
        return None
    torch = require("torch", "models")
    rows = torch.cat([p.rows for p in pending])  # (N,)
    cut = min(p.cut for p in pending)
    return [(k[:, :, cut:].index_select(0, rows), v[:, :, cut:].index_select(0, rows))
            for k, v in pending[0].base]


def _stacked(layers: Sequence[list[tuple[Tensor, Tensor]]], widths: Sequence[int],
             width: int) -> list[tuple[Tensor, Tensor]]:
    """Per model layer, every state's keys and values stacked on rows, left-padded to ``width``."""
    out = []
    for per_state in zip(*layers):  # one model layer: (k, v) of each state, (N_i, H, w_i, D)
        pair = []
        for part in (0, 1):
            first = per_state[0][part]
            rows = sum(kv[part].shape[0] for kv in per_state)
            stacked = first.new_zeros(rows, first.shape[1], width, first.shape[3])
            offset = 0
            for kv, w in zip(per_state, widths):
                n = kv[part].shape[0]
                stacked[offset : offset + n, :, width - w :] = kv[part]
                offset += n
            pair.append(stacked)
        out.append((pair[0], pair[1]))
    return out


def plain_layers(cache: Any) -> list[tuple[Tensor, Tensor]] | None:
    """A ``DynamicCache``'s keys and values per layer, (N, H, L, D) each; None for other caches
    (sliding windows, encoder-decoder caches, transformers before 4.56)."""
    layers = getattr(cache, "layers", None)
    if type(cache).__name__ != "DynamicCache" or not layers:
        return None
    if any(type(layer).__name__ != "DynamicLayer" or not layer.is_initialized
           for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]


def cache_of(layers: Sequence[tuple[Tensor, Tensor]]) -> Any:
    """A ``DynamicCache`` holding these keys and values (N, H, L, D) per layer, not copied."""
    transformers = require("transformers", "models")
    cache = transformers.DynamicCache(
        ddp_cache_data=[(k[:, :, :0], v[:, :, :0]) for k, v in layers])
    for layer, (k, v) in zip(cache.layers, layers):
        layer.keys, layer.values = k, v
    return cache
