"""Writing an index folder whole: readers see the old folder or the new one, never a mix."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def replace_folder(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a sibling temporary folder, then rename it to ``path``.

    Between the two renames ``path`` is briefly absent; a crash there leaves the old
    folder at ``.<name>.old-*`` next to it. A failed ``write`` leaves ``path`` as it was.
    """
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
