"""The real packaged SmolLM2-135M-Instruct: GGUF conversion, cache, answers.

Slow (the first load dequantises the GGUF for about 30 s): run with ``-m models``
or as part of the full suite.
"""

from __future__ import annotations


import numpy as np
import pytest

from ragmix.generation import RAG, HFGenerator, load_smollm2
from ragmix.types import Hit

pytestmark = [pytest.mark.models, pytest.mark.slow]

QUESTION = "How deep is Lake Varno?"
HITS = [
    Hit(
        chunk_id=0,
        doc_id="lakes.md",
        title="Lake Varno",
        text="Lake Varno is a freshwater lake in northern Estavia. It is 42 kilometres "
        "long and its deepest point is 310 metres.",
        score=2.0,
        prob=0.73,
        rank=1,
    ),
    Hit(
        chunk_id=1,
        doc_id="towns.md",
        title="Kelm",
        text="Kelm is a small town founded in 1672 by fishermen. It lies on the eastern "
        "shore of Lake Varno.",
        score=1.0,
        prob=0.27,
        rank=2,
    ),
]


class ListSearcher:
    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        return HITS[:k]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: more threads than free cores is far slower
    yield tmp_path_factory.mktemp("ragmix-cache")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def first(cache_dir) -> HFGenerator:
    """Converted from the packaged GGUF into the (empty) temporary cache."""
    return load_smollm2(cache_dir=cache_dir)


def test_conversion_writes_a_complete_cache(first, cache_dir):
    folder = cache_dir / "models" / "SmolLM2-135M-Instruct"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left
    assert "quantization_config" not in (folder / "config.json").read_text()
    # The ChatML template survives the GGUF -> safetensors round trip.
    template = first.tokenizer.chat_template
    assert "<|im_start|>" in template and "<|im_end|>" in template
    assert first.tokenizer.convert_tokens_to_ids("<|im_end|>") in first.stop_token_ids
    assert first.name == "SmolLM2-135M-Instruct"
    assert first.max_context_tokens == 8192


def test_rag_answer_streams_and_cached_load_skips_conversion(first, cache_dir, monkeypatch):
    rag = RAG(ListSearcher(), first, k=2, max_new_tokens=48)
    pieces: list[str] = []
    answer = rag.ask(QUESTION, on_token=pieces.append)
    assert answer.text.strip() and "".join(pieces) == answer.text
    assert answer.hits == tuple(HITS)
    assert all(1 <= n <= 2 for n in answer.cited)

    import ragmix.generation.smollm as smollm

    def no_conversion(*args, **kwargs):
        raise AssertionError("the cached model was converted again")

    monkeypatch.setattr(smollm, "_convert_gguf", no_conversion)  # the slow part, done once
    second = load_smollm2(cache_dir=cache_dir)
    again = RAG(ListSearcher(), second, k=2, max_new_tokens=48).ask(QUESTION)
    assert again.text == answer.text


def test_token_logprobs_prefer_the_right_answer(first):
    prompts = ["What is the capital of France? Answer with one word."] * 2
    paris, berlin = first.token_logprobs(prompts, ["Paris", "Berlin"])
    assert np.all(paris <= 0) and np.all(np.isfinite(berlin))
    assert paris.sum() > berlin.sum()
