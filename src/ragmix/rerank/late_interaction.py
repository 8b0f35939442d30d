"""Late-interaction reranking (ColBERT, Khattab & Zaharia, 2020) from a BERT-style encoder.

Query and passage are encoded separately into one vector per token (the
transformer's last hidden state, through a trained linear projection where the
folder has one, L2-normalised per token), and a passage scores the sum over
query tokens of its best-matching token (:func:`ragmix.rerank.maxsim.maxsim`).

    from ragmix.rerank.late_interaction import LateInteractionScorer

    scorer = LateInteractionScorer()  # the packaged all-MiniLM-L6-v2, untrained for MaxSim
    scorer.score("how deep is lake varno?", ["Lake Varno is 310 m deep.", "Paris is big."])
    trained = LateInteractionScorer("models/scifact-colbert")  # ragmix train late-interaction

Choices, and why:

- **Token vectors are computed at query time** for the candidates, not stored
  in the collection. A SciFact abstract is ~250 tokens, so its token vectors
  (384-d float32) take ~250x the space of its one dense vector; even ColBERT's
  128-d fp16 compression would leave ~40x. Reranking needs them for the top
  50 only, and a small LRU cache (``cache_mb``, keyed by passage text) keeps
  those of recent candidates, so a repeated question or a re-asked search
  costs only the query. The price is latency: the encoder reads about 40
  SciFact abstracts a second on 2 CPU cores in float32 (~110 with bf16 on
  AMX), so 50 fresh candidates cost ~1.2 s (~0.5 s); MaxSim itself is ~10 ms.
  Where that is too slow, ``store=DIR`` keeps every passage's vectors on
  disk in float16 (:class:`~ragmix.rerank.token_store.TokenStore`), filled as
  passages are scored or all at once by :meth:`LateInteractionScorer.warm`;
  a query then costs its own encoding and MaxSim.
- **No query or document markers and no [MASK] query augmentation.** Both are
  ColBERT's, learnt with the model; MiniLM's ``[unused]`` marker embeddings are
  untrained, and on 60 SciFact *train* claims (BM25 top 15 reranked,
  nDCG@10) padding the query with [MASK] to 32 tokens fell from 0.758 to
  0.727 with the untrained model. Trained and untrained folders encode text
  the same way, so a trained model is scored as it was trained.
- **Punctuation tokens are skipped in passages** (ColBERT's
  ``mask_punctuation``): within noise on that sample (0.755 against 0.758),
  and ~10% fewer vectors to cache and score. ``[CLS]``/``[SEP]`` stay, as in
  ColBERT. Queries keep every token, cut at 32 (ColBERT's query length).

A folder written by ``ragmix train late-interaction`` holds a
sentence-transformers model (its transformer at the root), ``projection.safetensors``
and ``late_interaction.json`` (:class:`LateInteractionSettings`); a plain
sentence-transformers or Hugging Face BERT folder is used as the untrained
model is, without a projection.
"""

from __future__ import annotations

import json
import string
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.dtypes import autocast, resolve_dtype
from ragmix.errors import BadInputError
from ragmix.rerank.maxsim import maxsim
from ragmix.rerank.token_store import TokenStore, fingerprint, passage_key

if TYPE_CHECKING:
    from torch import Tensor

SETTINGS_FILE = "late_interaction.json"
PROJECTION_FILE = "projection.safetensors"
QUERY_LENGTH = 32  # ColBERT's query_maxlen: questions and claims are shorter
ENCODING = "ragmix-late-interaction/1"  # bump when token_vectors() changes what it computes
FINGERPRINT_FILES = ("config.json", "tokenizer.json", "vocab.txt", "vocab.json", "merges.txt",
                     "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "*.model")  # weights, sentencepiece
WARM_BATCHES = 8  # warm() encodes and stores this many batches at a time


@dataclass(frozen=True)
class LateInteractionSettings:
    """How a folder's model turns text into token vectors; saved as ``late_interaction.json``."""

    dim: int | None = None  # projection width; None: the hidden state itself (no projection)
    query_length: int = QUERY_LENGTH
    skip_punctuation: bool = True  # in passages only, as ColBERT

    def save(self, folder: Path) -> None:
        (folder / SETTINGS_FILE).write_text(json.dumps(
            {**asdict(self), "projection": PROJECTION_FILE if self.dim else None}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> LateInteractionSettings:
        """The folder's settings, or the defaults (no projection) for a plain model folder."""
        path = folder / SETTINGS_FILE
        if not path.is_file():
            return cls()
        try:
            raw = json.loads(path.read_text())
            return cls(dim=raw["dim"], query_length=int(raw["query_length"]),
                       skip_punctuation=bool(raw["skip_punctuation"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"{str(path)!r} is not a late-interaction settings file "
                                f"({exc}); retrain the model or delete the file") from None


def transformer_folder(folder: Path) -> Path:
    """Where the Hugging Face model of ``folder`` lives: its root, or a sentence-transformers
    folder's Transformer module (``modules.json``)."""
    if (folder / "config.json").is_file():
        return folder
    modules = folder / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if str(module.get("type", "")).endswith("Transformer"):
                return folder / module.get("path", "")
    raise BadInputError(f"{str(folder)!r} holds no Hugging Face model (no config.json, no "
                        "sentence-transformers Transformer module); give a folder written by "
                        "`ragmix train late-interaction`, or a local BERT or sentence-transformers "
                        "folder")


def punctuation_ids(tokenizer: Any) -> frozenset[int]:
    """Vocabulary ids of the single-character punctuation tokens (``,`` ``.`` ``(`` ...)."""
    vocab = tokenizer.get_vocab()
    return frozenset(vocab[p] for p in string.punctuation if p in vocab)


def token_vectors(model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int,
                  projection: Any = None, skip_ids: frozenset[int] = frozenset(),
                  dtype: str = "float32") -> tuple[Tensor, Tensor]:
    """Unit token vectors of ``texts`` and which count: (n, T, D) float32, (n, T) bool.

    The one encoding both scoring and training use. Tokens past ``max_length``
    are cut; padding and ``skip_ids`` are masked out and their vectors are
    zeros. A graph is built if grad is on. ``dtype="bfloat16"`` autocasts the
    forward pass (the vectors are float32 either way).
    """
    torch = require("torch", "models")
    device = next(model.parameters()).device
    features = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt").to(device)
    with autocast(dtype):
        hidden = model(input_ids=features["input_ids"],
                       attention_mask=features["attention_mask"]).last_hidden_state  # (n, T, H)
        if projection is not None:
            hidden = projection(hidden)  # (n, T, D)
    vectors = torch.nn.functional.normalize(hidden.float(), p=2, dim=-1)  # (n, T, D)
    mask = features["attention_mask"].bool()  # (n, T)
    if skip_ids:
        skip = torch.tensor(sorted(skip_ids), device=device)
        mask = mask & ~torch.isin(features["input_ids"], skip)  # (n, T)
    return vectors * mask[..., None], mask  # (n, T, D), (n, T)


def projection_file(folder: Path, settings: LateInteractionSettings) -> Path | None:
    """The folder's projection weights, None if its settings name none; an error if missing."""
    if not settings.dim:
        return None
    path = folder / PROJECTION_FILE
    if not path.is_file():
        raise BadInputError(f"{str(folder)!r} names a {settings.dim}-d projection but has no "
                            f"{PROJECTION_FILE}; retrain the model or copy the whole folder")
    return path


def load_projection(folder: Path, settings: LateInteractionSettings, hidden_size: int) -> Any:
    """The folder's trained projection (a bias-free ``torch.nn.Linear``), or None."""
    path = projection_file(folder, settings)
    if path is None:
        return None
    torch = require("torch", "models")
    st = require("safetensors.torch", "models")
    projection = torch.nn.Linear(hidden_size, settings.dim, bias=False)
    projection.load_state_dict(st.load_file(str(path)))
    return projection.eval()


def model_fingerprint(path: str | Path | None = None, *, dtype: str = "auto") -> str:
    """What a token store records as the model behind its vectors: sha256 (hex) over the
    transformer's config, tokenizer and weight files, the projection, the passage settings and
    the compute dtype, so retraining a folder in place or changing its settings changes it.

    ``path`` and ``dtype`` are as :class:`LateInteractionScorer` takes them; nothing is loaded,
    so a caller can choose a store directory per model before building the scorer. Hashing
    MiniLM's 90 MB of weights takes ~0.1 s.
    """
    if path is None:
        from ragmix.encoders.sentence_transformer import packaged_minilm_path

        folder = packaged_minilm_path()
    else:
        folder = Path(path).expanduser()
    settings = LateInteractionSettings.load(folder)
    hf_folder = transformer_folder(folder)
    files = [hf_folder / name for name in FINGERPRINT_FILES if (hf_folder / name).is_file()]
    files += sorted({p for pattern in WEIGHT_GLOBS for p in hf_folder.glob(pattern)})
    projection = projection_file(folder, settings)
    if projection is not None and projection not in files:
        files.append(projection)
    return fingerprint(files, {"encoding": ENCODING, "dim": settings.dim,
                               "dtype": resolve_dtype(dtype),
                               "skip_punctuation": settings.skip_punctuation})


class TokenCache:
    """A bounded LRU map from passage text to its token vectors, by bytes held."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # a server may score from several threads

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            found = self._items.get(text)
            if found is not None:
                self._items.move_to_end(text)
            return found

    def put(self, text: str, vectors: np.ndarray) -> None:
        if vectors.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(text, None)
            self.bytes -= 0 if old is None else old.nbytes
            self._items[text] = vectors
            self.bytes += vectors.nbytes
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._items)


class LateInteractionScorer:
    """A :class:`~ragmix.rerank.PassageScorer`: MaxSim over per-token vectors.

    ``path`` is None (the packaged all-MiniLM-L6-v2, untrained), a folder
    written by ``ragmix train late-interaction``, or a local BERT or
    sentence-transformers folder. Passages are cut at ``max_length`` tokens
    and encoded ``batch_size`` at a time; ``cache_mb`` bounds the cache of
    passage token vectors (0 turns it off). ``dtype`` is one of
    :data:`ragmix.dtypes.DTYPES`. ``store`` is a directory for a
    :class:`~ragmix.rerank.token_store.TokenStore`: passages are looked up in
    the cache, then the store, and only the rest are encoded and written
    through; with a store, every passage's vectors are float16 (stored or
    fresh), so a score does not depend on where its vectors came from.

    >>> scorer = LateInteractionScorer()  # doctest: +SKIP
    >>> scorer.score("capital of France?", ["Paris is the capital.", "Bread rises."])  # doctest: +SKIP
    array([12.3, 8.1])
    """

    def __init__(self, path: str | Path | None = None, *, dtype: str = "auto",
                 batch_size: int = 32, max_length: int = 256, cache_mb: float = 64,
                 store: str | Path | None = None) -> None:
        for option, value in (("batch_size", batch_size), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise BadInputError(f"{option} must be an integer > 0, got {value!r}")
        if not (isinstance(cache_mb, (int, float)) and cache_mb >= 0):
            raise BadInputError(f"cache_mb must be a number >= 0, got {cache_mb!r}")
        self._dtype = resolve_dtype(dtype)
        self.batch_size, self.max_length = batch_size, max_length
        if path is None:
            from ragmix.encoders.sentence_transformer import packaged_minilm_path

            folder, self._name = packaged_minilm_path(), "late-interaction:minilm"
        else:
            folder = Path(path).expanduser()
            if not folder.is_dir():
                raise BadInputError(f"late-interaction model folder {str(path)!r} does not "
                                    "exist; train one with `ragmix train late-interaction` or "
                                    "omit the model for the packaged MiniLM")
            self._name = f"late-interaction:{folder.resolve().name}"
        self._load(folder)
        self.cache = TokenCache(int(cache_mb * 2**20))
        self.store: TokenStore | None = None
        if store is not None:
            self.store = TokenStore(
                store, dim=self.dim, model=f"{self._name} {self._dtype}",
                model_fingerprint=model_fingerprint(path, dtype=self._dtype))

    def _load(self, folder: Path) -> None:
        torch = require("torch", "models")
        transformers = require("transformers", "models")
        from ragmix.generation.hf import quiet_progress_bars

        self.settings = LateInteractionSettings.load(folder)
        projection_file(folder, self.settings)  # a missing file fails before the slow load
        hf_folder = transformer_folder(folder)
        with quiet_progress_bars():
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_folder))
            self.model = transformers.AutoModel.from_pretrained(
                str(hf_folder), dtype=torch.float32).eval()  # bf16 is autocast, not stored
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:  # BERT cannot read past its position table
            self.max_length = min(self.max_length, int(positions))
        self.projection = load_projection(folder, self.settings, self.model.config.hidden_size)
        self._skip = punctuation_ids(self.tokenizer) if self.settings.skip_punctuation \
            else frozenset()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def dim(self) -> int:
        """The width of the token vectors: the projection's, else the hidden state's."""
        return int(self.settings.dim or self.model.config.hidden_size)

    def _encode(self, texts: Sequence[str], *, max_length: int,
                skip: frozenset[int]) -> list[np.ndarray]:
        """Each text's kept token vectors, (T_i, D) float32, without a graph."""
        torch = require("torch", "models")
        out: list[np.ndarray] = [np.zeros(0)] * len(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # batches pad little
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start : start + self.batch_size]
                vectors, mask = token_vectors(
                    self.model, self.tokenizer, [texts[i] for i in rows], max_length=max_length,
                    projection=self.projection, skip_ids=skip, dtype=self._dtype)  # (b, T, D)
                for row, vecs, keep in zip(rows, vectors.cpu().numpy(), mask.cpu().numpy()):
                    out[row] = np.ascontiguousarray(vecs[keep])  # (T_i, D)
        return out

    def query_vectors(self, query: str) -> np.ndarray:
        """The query's token vectors, (Tq, D) float32: every token, cut at the query length."""
        return self._encode([query], max_length=self.settings.query_length, skip=frozenset())[0]

    def passage_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each passage's kept token vectors, (T_i, D): float32, or float16 with a store;
        from the cache, then the store, where held."""
        found = {t: v for t in dict.fromkeys(texts) if (v := self.cache.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing and self.store is not None:
            stored = self.store.get([passage_key(t, self.max_length) for t in missing])
            for text, vectors in zip(missing, stored):
                if vectors is not None:
                    found[text] = vectors
                    self.cache.put(text, vectors)
            missing = [t for t in missing if t not in found]
        if missing:
            found.update(self._compute(missing, cache=True))
        return [found[t] for t in texts]

    def _compute(self, texts: list[str], *, cache: bool) -> dict[str, np.ndarray]:
        """Encode ``texts``; with a store, round to float16 and write them through."""
        vectors = self._encode(texts, max_length=self.max_length, skip=self._skip)
        if self.store is not None:
            vectors = [v.astype(np.float16) for v in vectors]  # (T_i, D), as the store returns
            self.store.put([(passage_key(t, self.max_length), v) for t, v in zip(texts, vectors)])
        if cache:
            for text, vecs in zip(texts, vectors):
                self.cache.put(text, vecs)
        return dict(zip(texts, vectors))

    def warm(self, texts: Iterable[str], *,
             progress: Callable[[int, int], None] | None = None) -> int:
        """Encode and store every passage of ``texts`` the store lacks; how many were encoded.

        For a whole collection before serving. Passages are sorted by length
        (batches pad little) and stored ``WARM_BATCHES`` batches at a time;
        ``progress(done, total)`` is called before the first and after each
        (``total``: distinct texts; ``done`` counts those already stored).
        """
        if self.store is None:
            raise BadInputError("warm() fills a token store, and this scorer has none: build it "
                                "with LateInteractionScorer(..., store=DIR)")
        unique = list(dict.fromkeys(texts))
        held = self.store.has([passage_key(t, self.max_length) for t in unique])
        missing = sorted((t for t, h in zip(unique, held) if not h), key=len, reverse=True)
        done, step = len(unique) - len(missing), self.batch_size * WARM_BATCHES
        if progress is not None:
            progress(done, len(unique))
        for start in range(0, len(missing), step):
            chunk = missing[start : start + step]
            self._compute(chunk, cache=False)  # a collection would only churn the LRU cache
            done += len(chunk)
            if progress is not None:
                progress(done, len(unique))
        return len(missing)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """MaxSim of ``query`` against each of ``texts``, float64 shape (len(texts),)."""
        texts = list(texts)
        if not texts:
            return np.zeros(0, dtype=np.float64)
        query_vecs = self.query_vectors(query)  # (Tq, D)
        docs = self.passage_vectors(texts)
        width = max(len(d) for d in docs)
        padded = np.zeros((len(docs), width, query_vecs.shape[1]), dtype=np.float32)  # (N, Td, D)
        mask = np.zeros((len(docs), width), dtype=bool)  # (N, Td)
        for n, vectors in enumerate(docs):
            padded[n, : len(vectors)], mask[n, : len(vectors)] = vectors, True
        return maxsim(query_vecs, padded, mask)  # (N,)
