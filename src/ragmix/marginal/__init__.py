"""The paper's generator: the retrieved passage as a latent variable (RAG-Sequence, RAG-Token).

``math`` holds the marginals and losses as pure functions; the scoring and
decoding modules run them on any :class:`~ragmix.generation.base.ScoringGenerator`
(a local Hugging Face model: :class:`~ragmix.generation.hf.HFGenerator`).
"""
