"""DecodeState as it was before issue 14 item 5 (commit fef5971), kept for bench_dtype.py only.

bench/bench_dtype.py times greedy decoding with this class and with the
current one back to back, in one process, so the "before" figure is measured
under the same load as the "after" one. Not part of the library; do not import.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragmix._extras import require
from ragmix.generation._batching import pad

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.hf import HFGenerator


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
            ids, mask, _ = pad([list(p) for p in prompts], gen.pad_id, left=True)
            self.mask = torch.from_numpy(mask)  # (N, L), grows a column per step
            positions = (self.mask.cumsum(-1) - 1).clamp(min=0)  # (N, L)
            self.next_pos = positions[:, -1] + 1  # (N,)
            self.cache = None
            self.next_lp = self._causal_step(torch.from_numpy(ids), positions)

    @property
    def rows(self) -> int:
        return self.next_lp.shape[0]

    def _causal_step(self, ids: Tensor, positions: Tensor) -> Tensor:
        kwargs: dict[str, Any] = {}
        if "logits_to_keep" in self.gen.forward_params:
            kwargs["logits_to_keep"] = 1
        if "position_ids" in self.gen.forward_params:
            kwargs["position_ids"] = positions
        out = self.model(input_ids=ids, attention_mask=self.mask, past_key_values=self.cache,
                         use_cache=True, **kwargs)
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
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
            positions = self.next_pos[:, None]  # (N, 1)
            self.next_pos = self.next_pos + 1
            self.next_lp = self._causal_step(step, positions)
        return self.next_lp

    def select(self, index: Tensor) -> None:
        """Keep rows ``index`` (M,), in that order; a row may be repeated (beam search)."""
        index = index.long()
        self.next_lp = self.next_lp.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder_cache(index)
        if self.seq2seq:
            self.decoded = self.decoded.index_select(0, index)
            self.enc_mask = self.enc_mask.index_select(0, index)
            hidden = self.encoded.last_hidden_state.index_select(0, index)
            self.encoded = type(self.encoded)(last_hidden_state=hidden)
        else:
            self.mask = self.mask.index_select(0, index)
            self.next_pos = self.next_pos.index_select(0, index)

    def fork(self, index: Tensor) -> DecodeState:
        """A copy holding rows ``index`` (M,); this state is left as it was."""
        other = copy.copy(self)
        other.cache = copy.deepcopy(self.cache)
        other.select(index)
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
            self.mask = torch.cat([self.mask, mask.long()], dim=1)
            positions = self.next_pos[:, None] + torch.arange(width)[None, :]  # (N, S)
            kwargs = {"position_ids": positions} if "position_ids" in self.gen.forward_params \
                else {}
            out = self.model(input_ids=ids, attention_mask=self.mask,
                             past_key_values=self.cache, use_cache=True, **kwargs)
            rest = out.logits[:, :-1].float().log_softmax(-1)  # (N, S - 1, V)
            lp = torch.cat([self.next_lp[:, None], rest], dim=1)  # (N, S, V)
        picked = lp.gather(-1, ids[:, :, None]).squeeze(-1)  # (N, S)
        return picked.masked_fill(~mask, 0.0)
