"""Cost of answering with K passages: stuff, RAG-Token, RAG-Sequence (fast, thorough).

    .venv/bin/python bench/bench_rag_decoding.py [--questions 8] [--k 5] [--new-tokens 32]

On SmolLM2-135M (the default generator), for SQuAD-open dev questions with
their gold paragraph and K-1 other paragraphs of the same article (cut to 100
words, the paper's passage size), times one answer of exactly ``--new-tokens``
tokens (stop tokens are ignored, so every mode decodes the same length):

- single:  one greedy generation from one passage (the unit of cost);
- sequential: K single-passage generations one after another (the naive way);
- stuff: all K passages in one prompt;
- rag-token: greedy over the mixture, the K passages batched in one KV cache;
- rag-sequence fast / thorough: beam search (4) per passage, batched; thorough
  adds the forced passes, reusing the cached passage prompts.

Then the same comparison against Hugging Face transformers' own
RagTokenForGeneration / RagSequenceForGeneration on one tiny random BART
(both implementations given the same passages and doc scores).
Writes bench/results/rag_decoding.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, require_data, write_result  # noqa: E402

from ragmix.generation.prompt import build_passage_prompt, build_prompt  # noqa: E402
from ragmix.types import Hit  # noqa: E402


def squad_cases(folder: Path, n: int, k: int, seed: int = 0) -> list[tuple[str, list[Hit]]]:
    """(question, K hits): the gold paragraph first, then others of the same article."""
    by_article: dict[str, list[dict]] = {}
    paragraphs: dict[str, dict] = {}
    with (folder / "paragraphs.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["_id"].startswith("dev/"):
                paragraphs[row["_id"]] = row
                by_article.setdefault(row["_id"].rsplit("/", 1)[0], []).append(row)
    questions = [json.loads(line) for line in
                 (folder / "dev-questions.jsonl").open(encoding="utf-8")]
    rng = random.Random(seed)
    cases = []
    for q in rng.sample(questions, n):
        gold = paragraphs[q["gold_paragraph"]]
        others = [p for p in by_article[gold["_id"].rsplit("/", 1)[0]] if p is not gold]
        rows = [gold, *rng.sample(others, min(k - 1, len(others)))]
        hits = [Hit(i, r["_id"], " ".join(r["text"].split()[:100]), 1.0 - 0.1 * i, 0.0, i + 1,
                    title=r["title"]) for i, r in enumerate(rows)]
        cases.append((q["question"], hits))
    return cases


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def smollm_rows(cases, new_tokens: int, beams: int, rounds: int) -> dict[str, float]:
    import torch

    from ragmix.generation import load_generator
    from ragmix.marginal.math import doc_logprobs
    from ragmix.marginal.rag_sequence import rag_sequence_decode
    from ragmix.marginal.rag_token import rag_token_decode

    gen = load_generator("smollm2")
    gen._stop_ids = frozenset()  # decode exactly new_tokens tokens in every mode
    seconds: dict[str, list[float]] = {m: [] for m in (
        "single", "sequential", "stuff", "rag-token", "rag-sequence-fast",
        "rag-sequence-thorough")}
    for r in range(rounds):
        for question, hits in cases:
            prompts = [gen.encode_prompt(build_passage_prompt(question, h)) for h in hits]
            stuff = gen.encode_prompt(build_prompt(question, hits))
            prior = doc_logprobs(torch.tensor([h.score for h in hits], dtype=torch.float64))
            one = prior[:1] * 0
            runs = {
                "single": lambda: rag_token_decode(gen, prompts[:1], one,
                                                   max_new_tokens=new_tokens),
                "sequential": lambda: [rag_token_decode(gen, [p], one, max_new_tokens=new_tokens)
                                       for p in prompts],
                "stuff": lambda: rag_token_decode(gen, [stuff], one, max_new_tokens=new_tokens),
                "rag-token": lambda: rag_token_decode(gen, prompts, prior,
                                                      max_new_tokens=new_tokens),
                "rag-sequence-fast": lambda: rag_sequence_decode(
                    gen, prompts, prior, max_new_tokens=new_tokens, beams=beams,
                    decoding="fast"),
                "rag-sequence-thorough": lambda: rag_sequence_decode(
                    gen, prompts, prior, max_new_tokens=new_tokens, beams=beams,
                    decoding="thorough"),
            }
            names = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for name in names:
                seconds[name].append(timed(runs[name]))
    return {name: statistics.median(v) for name, v in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "squad-open")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-hf", action="store_true", help="skip the transformers RAG part")
    args = parser.parse_args()

    cases = squad_cases(require_data(args.data), args.questions, args.k)
    smol = smollm_rows(cases, args.new_tokens, args.beams, args.rounds)
    base = smol["single"]
    result: dict[str, object] = {"smollm2": {
        name: {"s_per_answer": round(s, 3), "x_single": round(s / base, 2)}
        for name, s in smol.items()}}
    print(f"SmolLM2-135M, K={args.k}, {args.new_tokens} new tokens, median of "
          f"{args.questions} questions x {args.rounds} rounds")
    for name, row in result["smollm2"].items():
        print(f"  {name:<22} {row['s_per_answer']:>7.3f} s  {row['x_single']:>5.2f}x single")
    if not args.skip_hf:
        from _hf_rag import hf_rows

        hf = hf_rows(args.k, args.new_tokens, args.beams, args.rounds)
        result["tiny_bart_vs_transformers"] = hf
        print("tiny random BART, ragmix vs transformers RAG (same passages, same doc scores)")
        for name, row in hf.items():
            print(f"  {name:<22} ragmix {row['ragmix_s']:.4f} s  transformers "
                  f"{row['transformers_s']:.4f} s  speed-up {row['speedup']:.2f}x")
    path = write_result("rag_decoding.json", {
        **result, "k": args.k, "new_tokens": args.new_tokens, "beams": args.beams,
        "questions": args.questions, "rounds": args.rounds,
        "targets": {"rag-token": "<= 2x single", "rag-sequence-thorough": "<= 3x single"}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
