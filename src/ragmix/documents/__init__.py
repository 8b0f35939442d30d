"""Loading files and folders into Documents (text, Markdown, HTML, PDF, BEIR JSONL)."""

from __future__ import annotations

from ragmix.documents.loaders import SUPPORTED_SUFFIXES, load_file, load_paths

__all__ = ["SUPPORTED_SUFFIXES", "load_file", "load_paths"]
