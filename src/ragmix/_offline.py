"""Process-wide defaults for running offline; called by entry points, never on import."""

from __future__ import annotations

import os

# Never let a library reach for a model hub, and keep third-party progress bars and
# advisories out of ragmix's own output.
OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def set_offline_defaults() -> None:
    """Set each variable unless the user already has; call before importing transformers."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
