"""bfloat16 against float32 on this CPU: embedding, teacher-forced scoring, greedy decoding.

    .venv/bin/python bench/bench_dtype.py [--threads 1] [--reps 3]

Each comparison runs back to back in one process, the two sides alternating
(their order flips every repetition), so a background load slows both alike;
figures are medians over ``--reps``. Writes bench/results/dtype.json.

- embedding: all-MiniLM-L6-v2 through ragmix's ``encode`` (the path indexing
  and training take), 300 SciFact abstracts, max_seq_length 256, batch 32;
  float32 against bf16 autocast, and the minimum cosine between the vectors.
- scoring: SmolLM2-135M ``score_ids`` of 16 rows of 206 tokens (a 190-token
  prompt and a 16-token continuation, RAG's shape) in one batch; float32
  against bf16 weights, and how far the log-probabilities move.
- decoding: 32 greedy tokens after a ~210-token prompt, timed after the
  prompt's forward pass; the DecodeState before this change
  (bench/_decode_state_before.py, a copy of it) against the current one, with
  float32 and with bf16 weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, require_data, write_result  # noqa: E402

TARGETS = {"embed_bf16_vs_fp32": 2.0, "score_bf16_vs_fp32": 3.0, "decode_after_vs_before": 2.0}


def abstracts(path: Path, n: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"].strip()
            if text:
                texts.append(text)
            if len(texts) == n:
                break
    return texts


def alternate(runs: dict, reps: int) -> dict[str, list[float]]:
    """Seconds of each run per repetition, the runs' order reversed every other time."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(reps):
        for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
            began = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - began)
    return seconds


def bench_embedding(texts: list[str], reps: int) -> dict:
    import numpy as np

    from ragmix.encoders.sentence_transformer import SentenceTransformerEncoder, encode

    model = SentenceTransformerEncoder().model
    model.max_seq_length = 256
    vectors = {d: encode(model, texts[:64], batch_size=32, dtype=d)  # warm-up
               for d in ("float32", "bfloat16")}
    runs = {d: (lambda d=d: vectors.__setitem__(d, encode(model, texts, batch_size=32, dtype=d)))
            for d in ("float32", "bfloat16")}
    seconds = alternate(runs, reps)
    cosine = np.sum(vectors["float32"] * vectors["bfloat16"], axis=1)  # unit vectors
    rate = {d: len(texts) / statistics.median(s) for d, s in seconds.items()}
    return {"passages": len(texts), "max_seq_length": 256, "batch_size": 32,
            "passages_per_s": {d: round(r, 1) for d, r in rate.items()},
            "seconds": {d: [round(x, 3) for x in s] for d, s in seconds.items()},
            "cosine_bf16_vs_fp32": {"min": round(float(cosine.min()), 6),
                                    "mean": round(float(cosine.mean()), 6)},
            "ratio": round(rate["bfloat16"] / rate["float32"], 2)}


def bench_scoring(gens: dict, texts: list[str], reps: int) -> dict:
    import torch

    gen = gens["float32"]
    rows = [ids[:206] for ids in map(gen.encode_answer, texts) if len(ids) >= 206][:16]
    prompts, conts = [r[:190] for r in rows], [r[190:] for r in rows]
    scores = {}

    def score(d):
        with torch.inference_mode():
            scores[d] = gens[d].score_ids(prompts, conts, full=True)

    for d in gens:
        score(d)  # warm-up
    seconds = alternate({d: (lambda d=d: score(d)) for d in gens}, reps)
    lp32, lp16 = scores["float32"].token_lp, scores["bfloat16"].token_lp  # (16, 16)
    diff = (lp32 - lp16).abs()
    top1 = (scores["float32"].full_lp.argmax(-1) == scores["bfloat16"].full_lp.argmax(-1))
    tokens = len(rows) * 206
    rate = {d: tokens / statistics.median(s) for d, s in seconds.items()}
    return {"rows": len(rows), "tokens_per_row": 206, "prompt_tokens": 190,
            "continuation_tokens": 16,
            "tokens_per_s": {d: round(r, 1) for d, r in rate.items()},
            "seconds": {d: [round(x, 3) for x in s] for d, s in seconds.items()},
            "token_logprob_abs_diff": {"max": round(float(diff.max()), 4),
                                       "mean": round(float(diff.mean()), 4)},
            "sequence_logprob_abs_diff_mean": round(
                float((lp32.sum(-1) - lp16.sum(-1)).abs().mean()), 4),
            "sequence_logprob_fp32_mean": round(float(lp32.sum(-1).mean()), 3),
            "next_token_top1_agreement": round(float(top1.float().mean()), 4),
            "ratio": round(rate["bfloat16"] / rate["float32"], 2)}


def bench_decoding(gens: dict, text: str, new_tokens: int, reps: int) -> dict:
    import torch

    from _decode_state_before import DecodeState as Before

    prompt = gens["float32"].encode_prompt("Summarise this abstract.\n\n" + text)
    tokens: dict[str, list[int]] = {}
    seconds: dict[str, list[float]] = {}

    def decode(name, state_class, gen):
        with torch.inference_mode():
            state = state_class(gen, [prompt])
            began, out = time.perf_counter(), []
            for _ in range(new_tokens):  # stop tokens ignored: every run decodes as many
                out.append(int(state.next_lp[0].argmax()))
                state.advance(torch.tensor(out[-1:]))
            seconds.setdefault(name, []).append(time.perf_counter() - began)
        tokens[name] = out

    from ragmix.generation.decode_state import DecodeState as After

    runs = {f"{when}_{d}": (lambda when=when, d=d: decode(
        f"{when}_{d}", Before if when == "before" else After, gens[d]))
        for d in gens for when in ("before", "after")}
    for run in runs.values():
        run()  # warm-up
    seconds.clear()
    alternate(runs, reps)  # decode() keeps its own clock: the prompt's pass is not timed
    rate = {name: new_tokens / statistics.median(s) for name, s in seconds.items()}
    agree = next((i for i, (a, b) in enumerate(zip(tokens["after_float32"],
                  tokens["after_bfloat16"])) if a != b), new_tokens)
    return {"prompt_tokens": len(prompt), "new_tokens": new_tokens,
            "tok_s": {name: round(r, 2) for name, r in rate.items()},
            "seconds": {name: [round(x, 3) for x in s] for name, s in seconds.items()},
            "same_tokens_before_after": {d: tokens[f"before_{d}"] == tokens[f"after_{d}"]
                                         for d in gens},
            "bf16_greedy_tokens_equal_to_fp32_before_first_difference": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--passages", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads [default: torch's own]; 1 on a machine that is busy")
    args = parser.parse_args()

    import torch

    from ragmix.dtypes import cpu_flags, resolve_dtype
    from ragmix.generation import load_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = abstracts(require_data(args.data / "corpus.jsonl"), args.passages)
    load_before = os.getloadavg()
    began = time.perf_counter()
    embedding = bench_embedding(texts, args.reps)
    print(f"embedding  {embedding['passages_per_s']} passages/s, x{embedding['ratio']}, "
          f"min cosine {embedding['cosine_bf16_vs_fp32']['min']}")
    gens = {d: load_generator("smollm2", dtype=d) for d in ("float32", "bfloat16")}
    scoring = bench_scoring(gens, texts, args.reps)
    print(f"scoring    {scoring['tokens_per_s']} tokens/s, x{scoring['ratio']}, "
          f"|d log p| mean {scoring['token_logprob_abs_diff']['mean']}")
    decoding = bench_decoding(gens, texts[0][:900], args.new_tokens, args.reps)
    print(f"decoding   {decoding['tok_s']} tokens/s")
    auto = resolve_dtype("auto")
    before, after = decoding["tok_s"]["before_float32"], decoding["tok_s"][f"after_{auto}"]
    ratios = {"embed_bf16_vs_fp32": embedding["ratio"], "score_bf16_vs_fp32": scoring["ratio"],
              "decode_after_vs_before": round(after / before, 2)}
    path = write_result("dtype.json", {
        **{k: v for k, v in ratios.items() if k != "decode_after_vs_before"},
        "decode_tok_s": {"before": before, "after": after,
                         "before_is": "float32, the DecodeState before this change",
                         "after_is": f"{auto} (what --dtype auto picks here), current DecodeState"},
        "decode_after_vs_before": ratios["decode_after_vs_before"],
        "embedding": embedding, "scoring": scoring, "decoding": decoding,
        "targets": TARGETS, "meets_targets": {k: ratios[k] >= t for k, t in TARGETS.items()},
        "auto_resolves_to": auto,
        "cpu_bf16_flags": sorted({"avx512_bf16", "amx_bf16", "amx_tile"} & cpu_flags()),
        "torch_threads": torch.get_num_threads(), "reps": args.reps,
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "seconds_total": round(time.perf_counter() - began, 1)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
