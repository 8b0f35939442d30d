"""The StoreBackend contract on the embedded backend (SQLite + FAISS + bm25s), per index kind."""

from __future__ import annotations

import pytest

pytest.importorskip("faiss")

from backend_contract import DIM, StoreBackendContract, put  # noqa: E402

from ragmix.store.embedded import EmbeddedBackend  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """Tiny indexes: OpenMP threads cost more than they gain on a shared box."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


class TestEmbeddedBackend(StoreBackendContract):
    # ivfpq: its scores come from 8-bit codes, so this also checks the exact re-scoring.
    @pytest.fixture(params=["flat", "hnsw", "ivf", "ivfpq"])
    def backend(self, request, tmp_path):
        opened: list[EmbeddedBackend] = []

        def make(dim: int = DIM, *, same_as: EmbeddedBackend | None = None) -> EmbeddedBackend:
            directory = tmp_path / f"store{len(opened)}" if same_as is None else same_as.directory
            made = EmbeddedBackend(directory, dim, index={"kind": request.param})
            opened.append(made)
            return made

        yield make
        for made in opened:
            made.close()


def test_views_are_persisted_by_refresh_and_reloaded(tmp_path):
    """Embedded only: refresh stamps both view files with the store's generation."""
    backend = EmbeddedBackend(tmp_path, DIM)
    try:
        put(backend, "a", ["lava flows", "ash falls"])
        assert not backend.views.is_current("dense")
        backend.refresh()
        assert backend.views.is_current("dense") and backend.views.is_current("bm25")
    finally:
        backend.close()


def test_joint_training_reads_only_the_passage_index(torch, tokenizer, tmp_path, monkeypatch):
    """RagTrainer searches, reads and fingerprints the collection through its PassageIndex:
    with the embedded internals (col.store, col.views) made unreachable it still trains."""
    from tiny_models import tiny_llama, tiny_sentence_transformer

    from ragmix.encoders import load_encoder
    from ragmix.evaluation.datasets import QAExample
    from ragmix.generation.hf import HFGenerator
    from ragmix.store import Collection
    from ragmix.training.rag import RagTrainer
    from ragmix.training.rag_config import RagTrainConfig

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, topic in enumerate(["volcano lava", "piano music", "rocket orbit", "bread oven"]):
        (corpus / f"doc{i}.txt").write_text(f"the {topic} facts.")
    _, st_path = tiny_sentence_transformer(torch, tokenizer, tmp_path)
    examples = [QAExample("q0", "what about volcano?", ("lava",)),
                QAExample("q1", "what about rocket?", ("orbit",))]
    with Collection.create(tmp_path / "col", encoder=load_encoder(str(st_path))) as col:
        col.add([corpus])

        def unreachable(self):
            raise AssertionError("training reached an embedded-store internal")

        monkeypatch.setattr(Collection, "store", property(unreachable))
        monkeypatch.setattr(Collection, "views", property(unreachable))
        generator = HFGenerator(tiny_llama(torch, tokenizer), tokenizer, name="tiny-llama")
        trainer = RagTrainer(col, generator, examples, RagTrainConfig(k=2, steps=1, batch_size=2),
                             query_model=load_encoder(str(st_path)).model)
        ids, prior = trainer.retrieve([ex.question for ex in examples])
        assert ids.shape == (2, 2) and prior.shape == (2, 2)
        assert float(trainer.loss(examples).detach()) > 0
        assert trainer.fingerprint()["collection"].endswith(f"@{col.backend.generation}")
