"""Command-line options shared by several commands, their choices taken from the registries."""

from __future__ import annotations

import click

from ragmix.chunking import CHUNKERS
from ragmix.index import INDEX_KINDS
from ragmix.retrieval.retrievers import FUSIONS, MODES

CHUNKER_NAMES = tuple(CHUNKERS)

fusion_option = click.option(
    "--fusion", type=click.Choice(FUSIONS), default="rrf", show_default=True,
    help="Hybrid fusion: Reciprocal Rank Fusion (k=60) or min-max weighted scores.",
)

__all__ = ["CHUNKER_NAMES", "FUSIONS", "INDEX_KINDS", "MODES", "fusion_option"]
