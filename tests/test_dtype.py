"""--dtype: how "auto" decides, and bf16 staying close to float32 on tiny random models.

The CPU answer is monkeypatched both ways: the tests never depend on the
machine they run on.
"""

from __future__ import annotations

import numpy as np
import pytest

from ragmix import dtypes
from ragmix.dtypes import DTYPES, ENV_VAR, cpu_flags, resolve_dtype
from ragmix.errors import BadInputError


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def cpu_with(monkeypatch, *flags: str) -> None:
    monkeypatch.setattr(dtypes, "cpu_flags", lambda path=dtypes.CPUINFO: frozenset(flags))


# -- deciding "auto" ---------------------------------------------------------------


def test_explicit_dtypes_pass_through_and_others_are_refused(monkeypatch):
    cpu_with(monkeypatch, "amx_bf16")
    assert resolve_dtype("float32") == "float32"
    assert resolve_dtype("bfloat16") == "bfloat16"
    assert resolve_dtype() == "float32"  # the library never guesses unless asked
    message = r"dtype must be one of \('auto', 'float32', 'bfloat16'\), got 'fp16'"
    with pytest.raises(BadInputError, match=message):
        resolve_dtype("fp16")


def test_auto_is_bf16_on_a_cpu_with_amx(monkeypatch):
    pytest.importorskip("torch")
    cpu_with(monkeypatch, "fpu", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    monkeypatch.setattr("torch.backends.mkldnn.is_available", lambda: True)
    assert resolve_dtype("auto") == "bfloat16"


@pytest.mark.parametrize("flags", [
    (),  # /proc/cpuinfo unreadable, or no flags line: nothing is assumed
    ("fpu", "avx2", "fma"),
    ("avx512f", "avx512_bf16"),  # bf16 dot products without AMX: slower than float32 here
])
def test_auto_is_float32_without_amx(monkeypatch, flags):
    cpu_with(monkeypatch, *flags)
    assert resolve_dtype("auto") == "float32"


def test_auto_is_float32_without_onednn(monkeypatch):
    pytest.importorskip("torch")
    cpu_with(monkeypatch, "amx_bf16")
    monkeypatch.setattr("torch.backends.mkldnn.is_available", lambda: False)
    assert resolve_dtype("auto") == "float32"


def test_the_environment_overrides_auto_only(monkeypatch):
    cpu_with(monkeypatch)
    monkeypatch.setenv(ENV_VAR, "bfloat16")
    assert resolve_dtype("auto") == "bfloat16"
    assert resolve_dtype("float32") == "float32"  # an explicit choice wins
    monkeypatch.setenv(ENV_VAR, "half")
    with pytest.raises(BadInputError, match=f"\\${ENV_VAR} must be one of"):
        resolve_dtype("auto")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu sse2 amx_bf16 avx512_bf16"
                    "\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse2", "amx_bf16", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_the_real_cpu_gives_an_answer():
    pytest.importorskip("torch")
    assert resolve_dtype("auto") in DTYPES[1:]


# -- encoders --------------------------------------------------------------------------


TEXTS = ["volcano lava eruption", "a much longer text about piano music and the concert hall",
         "rocket", "bread flour oven and the smell of a bakery in the morning"]


def test_bf16_embeddings_are_float32_unit_vectors_close_to_fp32(torch, tokenizer, tmp_path):
    from tiny_models import tiny_sentence_transformer

    from ragmix.encoders import load_encoder

    _, path = tiny_sentence_transformer(torch, tokenizer, tmp_path)
    fp32 = load_encoder(str(path), dtype="float32")
    bf16 = load_encoder(str(path), dtype="bfloat16")
    assert (fp32.dtype, bf16.dtype) == ("float32", "bfloat16")
    assert bf16.name == fp32.name  # a collection's manifest does not depend on the dtype
    a, b = fp32.encode_documents(TEXTS), bf16.encode_documents(TEXTS)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert np.sum(a * b, axis=1).min() > 0.99
    assert bf16.model.dtype == torch.float32  # autocast: the weights are not cast


def test_encoders_without_float_weights_ignore_the_dtype():
    from ragmix.encoders import load_encoder

    assert load_encoder("hashing-32", dtype="bfloat16").dim == 32
    with pytest.raises(BadInputError, match="dtype must be one of"):
        load_encoder("hashing-32", dtype="float16")


def test_a_collection_loads_its_encoder_in_the_dtype_it_is_opened_with(
        torch, tokenizer, tmp_path):
    from tiny_models import tiny_sentence_transformer

    from ragmix.store import Collection

    _, path = tiny_sentence_transformer(torch, tokenizer, tmp_path)
    (tmp_path / "docs").mkdir()
    for i, text in enumerate(TEXTS):
        (tmp_path / "docs" / f"{i}.txt").write_text(text)
    with Collection.create(tmp_path / "col", encoder=str(path), dtype="float32") as col:
        col.add([tmp_path / "docs"])
    with Collection.open(tmp_path / "col", dtype="bfloat16") as col:
        assert col.encoder.dtype == "bfloat16"
        hits = col.search(TEXTS[3], k=1, mode="dense")  # fp32 documents, bf16 query
    assert hits[0].text == TEXTS[3]


# -- generators -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_folder(torch, tokenizer, tmp_path_factory):
    from tiny_models import tiny_llama

    folder = tmp_path_factory.mktemp("llama")
    # Moderate weights: the peaked 0.5-scale logits of the other tests would
    # magnify bf16's rounding beyond any useful tolerance.
    tiny_llama(torch, tokenizer, initializer_range=0.1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_bf16_generator_holds_bf16_weights_and_scores_close_to_fp32(torch, llama_folder):
    from ragmix.generation import load_generator

    fp32 = load_generator(str(llama_folder), dtype="float32")
    bf16 = load_generator(str(llama_folder), dtype="bfloat16")
    assert (fp32.dtype, bf16.dtype) == ("float32", "bfloat16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    prompts = ["what is the capital of france?", "tell me about the lake"]
    conts = ["paris is the capital.", "lake varno lies north of the town"]
    for a, b in zip(fp32.token_logprobs(prompts, conts), bf16.token_logprobs(prompts, conts)):
        assert b.dtype == np.float64
        np.testing.assert_allclose(b, a, atol=0.1)
    with torch.inference_mode():
        state = bf16.start_decoding([bf16.encode_prompt(p) for p in prompts])
        assert state.next_lp.dtype == torch.float32  # log-softmax in float32
        ref = fp32.start_decoding([fp32.encode_prompt(p) for p in prompts])
        torch.testing.assert_close(state.next_lp, ref.next_lp, atol=0.1, rtol=0)
    assert isinstance(bf16.generate(prompts[0], max_new_tokens=4), str)


def test_load_generator_refuses_an_unknown_dtype(llama_folder):
    from ragmix.generation import load_generator

    with pytest.raises(BadInputError, match="dtype must be one of"):
        load_generator(str(llama_folder), dtype="float16")


# -- decoding -----------------------------------------------------------------------


def test_unpadded_rows_are_decoded_without_a_mask_and_padded_ones_with(torch, llama_folder):
    from ragmix.generation.hf import HFGenerator

    gen = HFGenerator.from_pretrained(llama_folder)
    masks = []
    forward = gen.model.forward

    def spy(*args, **kwargs):
        masks.append(kwargs.get("attention_mask"))
        return forward(*args, **kwargs)

    gen.model.forward = spy
    one = gen.encode_prompt("what is the capital of france?")
    with torch.inference_mode():
        state = gen.start_decoding([one])
        state.advance(torch.tensor([5]))
        assert masks == [None, None]
        padded = gen.start_decoding([one, one[:3]])
        padded.advance(torch.tensor([5, 6]))
    assert all(m is not None for m in masks[2:]) and masks[-1].shape == (2, len(one) + 1)


def test_the_mask_buffer_grows_and_decoding_matches_scoring(torch, llama_folder):
    from ragmix.generation.hf import HFGenerator

    gen = HFGenerator.from_pretrained(llama_folder)
    prompts = [gen.encode_prompt("hi"), gen.encode_prompt("a much longer prompt about lakes")]
    answer = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26]
    with torch.inference_mode():
        state = gen.start_decoding(prompts)
        width = state.mask.shape[1]
        lps = [state.next_lp[:, answer[0]]]
        for fed, token in zip(answer, answer[1:]):  # past the buffer's first doubling
            lps.append(state.advance(torch.tensor([fed, fed]))[:, token])
        forced = gen.score_ids(prompts, [answer, answer]).token_lp  # (2, T)
    assert state.mask.shape == (2, width + len(answer) - 1)
    assert state.mask[:, width:].all() and state._mask_buf.shape[1] > state.mask.shape[1]
    torch.testing.assert_close(torch.stack(lps, dim=1), forced, atol=1e-4, rtol=0)


# -- training -----------------------------------------------------------------------


def test_training_configs_store_what_auto_resolved_to(monkeypatch):
    from ragmix.training.rag_config import RagTrainConfig
    from ragmix.training.retriever_config import RetrieverTrainConfig

    cpu_with(monkeypatch)
    assert RetrieverTrainConfig(dtype="auto").dtype == "float32"
    monkeypatch.setenv(ENV_VAR, "bfloat16")
    assert RagTrainConfig(dtype="auto").dtype == "bfloat16"
    with pytest.raises(BadInputError, match="dtype must be one of"):
        RagTrainConfig(dtype="half")


def test_bf16_retriever_training_keeps_float32_weights_and_resumes_only_in_bf16(
        torch, tokenizer, tmp_path):
    from test_training_retriever import _toy_set
    from tiny_models import tiny_sentence_transformer

    from ragmix.training.retriever import RetrieverTrainer
    from ragmix.training.retriever_config import RetrieverTrainConfig

    data = _toy_set()
    settings = dict(epochs=2, batch_size=3, chunk_size=2, lr=3e-3, warmup=0.0, negatives=(),
                    max_seq_length=32)
    model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path / "base")

    def stop(event, **info):
        if event == "step" and info["step"] == 2:
            raise KeyboardInterrupt

    trainer = RetrieverTrainer("unused", data, RetrieverTrainConfig(**settings, dtype="bfloat16"),
                               model=model)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tmp_path / "out", checkpoint_every=1, progress=stop)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(np.isfinite(s.loss) for s in trainer.train(tmp_path / "out").log)
    with pytest.raises(KeyboardInterrupt):
        RetrieverTrainer("unused", data, RetrieverTrainConfig(**settings, dtype="bfloat16"),
                         model=model).train(tmp_path / "again", checkpoint_every=1,
                                            progress=stop)
    fp32 = RetrieverTrainer("unused", data, RetrieverTrainConfig(**settings), model=model)
    with pytest.raises(BadInputError, match="other settings"):
        fp32.train(tmp_path / "again")


def test_bf16_rag_training_autocasts_float32_weights_and_refuses_bf16_ones(torch, rag_setup):
    from test_training_rag import _config, _examples

    from ragmix.training.rag import RagTrainer

    col, fresh = rag_setup
    losses = {}
    for dtype in ("float32", "bfloat16"):
        gen, query = fresh()
        trainer = RagTrainer(col, gen, _examples(), _config(dtype=dtype), query_model=query)
        loss = trainer.loss(_examples()[:3])
        loss.backward()
        losses[dtype] = float(loss.detach())
    assert abs(losses["bfloat16"] - losses["float32"]) < 0.05 * losses["float32"]
    lora = [p for n, p in gen.model.named_parameters() if "lora_" in n]
    assert {p.dtype for p in lora} == {torch.float32}  # master weights stay float32
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in query.parameters())
    gen, query = fresh()
    gen.model.to(torch.bfloat16)
    with pytest.raises(BadInputError, match="float32 weights"):
        RagTrainer(col, gen, _examples(), _config(dtype="bfloat16"), query_model=query)


@pytest.fixture
def rag_setup(torch, tokenizer, tmp_path):
    from test_training_rag import setup

    yield from setup.__wrapped__(torch, tokenizer, tmp_path)


# -- the command line ------------------------------------------------------------------


def test_commands_take_dtype_and_the_environment(tmp_path, monkeypatch, corpus):
    from click.testing import CliRunner

    from ragmix.cli.main import cli

    runner = CliRunner()
    col = str(tmp_path / "col")
    result = runner.invoke(cli, ["index", str(corpus), "-c", col, "--encoder", "hashing-64",
                                 "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["search", "marker3", "-c", col, "--dtype", "float32", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["search", "marker3", "-c", col, "--dtype", "float16"])
    assert result.exit_code == 2 and "float16" in result.output
    monkeypatch.setenv(ENV_VAR, "half")
    result = runner.invoke(cli, ["search", "marker3", "-c", col])
    assert result.exit_code == 2 and "half" in result.output
    for command in (["ask"], ["reembed"], ["eval", "retrieval"], ["eval", "qa"],
                    ["train", "retriever"], ["train", "rag"]):
        assert "--dtype [auto|float32|bfloat16]" in runner.invoke(cli, [*command, "--help"]).output


def test_ask_loads_the_generator_in_the_dtype_given(torch, llama_folder, tmp_path, corpus,
                                                     monkeypatch):
    from click.testing import CliRunner

    from ragmix.cli.main import cli
    from ragmix.generation import hf

    runner = CliRunner()
    col = str(tmp_path / "col")
    assert runner.invoke(cli, ["index", str(corpus), "-c", col, "--encoder",
                               "hashing-64"]).exit_code == 0
    loaded = []
    original = hf.HFGenerator.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        loaded.append(kwargs.get("dtype"))
        return original(cls, path, **kwargs)

    monkeypatch.setattr(hf.HFGenerator, "from_pretrained", classmethod(spy))
    result = runner.invoke(cli, ["ask", "what is marker3?", "-c", col, "--generator",
                                 str(llama_folder), "--max-new-tokens", "3", "--json",
                                 "--dtype", "bfloat16", "--mode", "stuff", "--decoding", "free"])
    assert result.exit_code == 0, result.output
    assert loaded == ["bfloat16"]
