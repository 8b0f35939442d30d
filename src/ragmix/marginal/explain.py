"""Which passage each answer token leaned on: a PNG heat map of the per-token posteriors.

The paper's Figure 2: rows are the K passages, columns the answer tokens, and
each cell p(z | x, y_<=i). Needs ``ragmix[plots]`` (matplotlib).
"""

from __future__ import annotations

from pathlib import Path

from ragmix.errors import BadInputError
from ragmix.types import Answer


def plot_token_posteriors(answer: Answer, path: str | Path, *, label_chars: int = 40) -> Path:
    """Draw ``answer.token_posteriors`` as a passages x tokens heat map into ``path``."""
    from ragmix.evaluation.plots import _pyplot, _save

    if not answer.token_posteriors:
        raise BadInputError("this answer has no per-token posteriors; ask with "
                            "mode rag-token, or rag-sequence with explain=True")
    np = __import__("numpy")
    grid = np.asarray(answer.token_posteriors, dtype=float).T  # (K, T)
    plt = _pyplot()
    k, t = grid.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * t + 3), max(2.0, 0.45 * k + 1.2)))
    image = ax.imshow(grid, aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(t), [tok.strip() or "␣" for tok in answer.tokens], rotation=60,
                  ha="right", fontsize=8)
    labels = []
    for hit in answer.hits:
        text = " ".join(hit.text.split())
        labels.append(f"[{hit.rank}] {text[:label_chars]}{'…' if len(text) > label_chars else ''}")
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_title(f"{answer.mode}: p(z | x, y≤i) per answer token")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return _save(fig, path)
