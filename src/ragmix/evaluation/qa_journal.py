"""A QA evaluation's answers, appended as they finish, so a crashed run resumes.

The journal is JSON lines: a header with the run's settings, then one
:class:`QAResult` per line. A run that finds a journal with the same settings
skips the questions it already holds; a journal with other settings is
refused rather than mixed in. A torn last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragmix.errors import BadInputError

if TYPE_CHECKING:
    from ragmix.evaluation.run_qa import QAResult


class QAJournal:
    """Answers of one QA run on disk; ``done`` maps question id to its result.

    >>> import tempfile
    >>> from ragmix.evaluation.run_qa import QAResult
    >>> path = Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> r = QAResult("1", "q?", ("a",), "a", 1.0, 1.0, 1.0, {"answer_recall@1": 1.0}, 0.1, 0.2)
    >>> with QAJournal(path, {"k": 5}) as journal:
    ...     journal.append(r)
    >>> QAJournal(path, {"k": 5}).done == {"1": r}
    True
    """

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))  # as it reads back
        self.done: dict[str, QAResult] = {}
        if self.path.exists() and self.path.stat().st_size:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"settings": self.settings}) + "\n")
        self._file = None

    def _load(self) -> None:
        from ragmix.evaluation.run_qa import QAResult

        lines = self.path.read_text().splitlines()
        try:
            header = json.loads(lines[0])["settings"]
        except (ValueError, KeyError, TypeError):
            raise BadInputError(f"{self.path} is not a QA journal; delete it or pick "
                                "another path") from None
        if header != self.settings:
            changed = sorted(k for k in {*header, *self.settings}
                             if header.get(k) != self.settings.get(k))
            raise BadInputError(f"{self.path} holds answers of a run with other settings "
                                f"({', '.join(changed)}); delete it to start over")
        for line in lines[1:]:
            try:
                row = json.loads(line)
            except ValueError:
                break  # torn by a crash mid-write: that answer is redone
            row["answers"] = tuple(row["answers"])
            row.setdefault("contains", None)  # written before that metric; evaluate_qa scores it
            self.done[row["id"]] = QAResult(**row)

    def append(self, result: QAResult) -> None:
        """Write ``result`` through to disk before returning."""
        if self._file is None:
            with self.path.open("rb+") as f:  # drop a torn tail before appending
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
            self._file = self.path.open("a")
        self._file.write(json.dumps(asdict(result)) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done[result.id] = result

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> QAJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
