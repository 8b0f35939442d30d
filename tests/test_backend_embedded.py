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
