"""The peers bench_speed.py measures ragmix against, each set up as its own docs show.

Heavy imports stay inside the functions, so ``--sections`` that skip a peer do
not need it installed (rank_bm25 and LlamaIndex come with ``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

K = 10


# -- BM25 ------------------------------------------------------------------------
def bm25s_peer(texts: Sequence[str]) -> Callable[[str], object]:
    """Raw bm25s with ragmix's settings (lucene, k1=1.2, b=0.75, en stopwords, English
    Snowball stemmer), built as bench_foundation.py builds it; returns a top-K query function."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)

    def query(q: str):
        tokens = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        return retriever.retrieve(tokens, k=K, show_progress=False, n_threads=1)

    return query


def ragmix_tokenizer() -> Callable[[str], list[str]]:
    """ragmix's BM25 tokenisation as a function: lowercase, ``(?u)\\b\\w\\w+\\b``, drop
    bm25s's English stopwords, PyStemmer English stems (see ragmix.retrieval.bm25)."""
    from ragmix.retrieval.bm25 import Tokenization

    tokenization = Tokenization()
    split = re.compile(tokenization.token_pattern).findall
    stopwords = frozenset(tokenization.stopword_list())
    stem = tokenization.make_stemmer().stemWords

    def tokenize(text: str) -> list[str]:
        return stem([w for w in split(text.lower()) if w not in stopwords])

    return tokenize


def rank_bm25_peer(texts: Sequence[str]) -> Callable[[str], np.ndarray]:
    """rank_bm25's ``BM25Okapi`` (k1=1.2, b=0.75) on ragmix's tokens; returns a top-K query
    function giving row numbers. Its idf is Okapi's with a floor, not Lucene's."""
    from rank_bm25 import BM25Okapi

    tokenize = ragmix_tokenizer()
    okapi = BM25Okapi([tokenize(t) for t in texts], k1=1.2, b=0.75)

    def query(q: str) -> np.ndarray:
        scores = okapi.get_scores(tokenize(q))  # (n,)
        top = np.argpartition(-scores, min(K, len(scores) - 1))[:K]
        return top[np.argsort(-scores[top])]

    return query


# -- dense -----------------------------------------------------------------------
def faiss_peer(vectors: np.ndarray) -> Callable[[np.ndarray], object]:
    """A bare ``IndexFlatIP`` over ``vectors`` (n, dim); returns a top-K search function."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return lambda q: index.search(q, K)  # (1, dim) -> (1, K), (1, K)


# -- end to end ------------------------------------------------------------------
def minilm_wordpieces(texts: Sequence[str]) -> int:
    """How many wordpieces MiniLM embeds for ``texts``: it cuts each at max_seq_length (256)."""
    from tokenizers import Tokenizer

    from ragmix.encoders.sentence_transformer import packaged_minilm_path

    folder = packaged_minilm_path()
    max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    return sum(min(len(e.ids), max_len) for e in tokenizer.encode_batch(list(texts)))


def llama_embed_model(model_path: Path):
    """LlamaIndex's HuggingFaceEmbedding on the local MiniLM folder, library defaults otherwise
    (embed_batch_size 10, normalised)."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(model_path), device="cpu")


def llama_index(corpus: Path, embed_model, chunk_tokens: int):
    """A VectorStoreIndex in memory over the BEIR ``corpus`` rows, each as ragmix reads it
    (title, blank line, text); SentenceSplitter with ``chunk_tokens`` and no overlap."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    documents = []
    for line in corpus.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text = f"{row['title']}\n\n{row['text']}" if row["title"].strip() else row["text"]
        documents.append(Document(text=text, id_=row["_id"]))
    splitter = SentenceSplitter(chunk_size=chunk_tokens, chunk_overlap=0)
    return VectorStoreIndex.from_documents(documents, embed_model=embed_model,
                                           transformations=[splitter])


def llamaindex_run(corpus: Path, embed_model, chunk_tokens: int, queries: Sequence[str]) -> dict:
    """Index ``corpus``, then retrieve the top K for each query, one at a time; returns the
    seconds of each phase, the texts embedded and each query's document ids."""
    from llama_index.core.schema import MetadataMode

    began = time.perf_counter()
    index = llama_index(corpus, embed_model, chunk_tokens)
    indexed = time.perf_counter()
    retriever = index.as_retriever(similarity_top_k=K)
    hits = [retriever.retrieve(q) for q in queries]
    done = time.perf_counter()
    return {"index": indexed - began, "query": done - indexed,
            "texts": [n.get_content(metadata_mode=MetadataMode.EMBED)
                      for n in index.docstore.docs.values()],
            "docs": [[n.node.ref_doc_id for n in found] for found in hits]}
