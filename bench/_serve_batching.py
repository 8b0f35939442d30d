"""bench_serve's batching section: asks per second from 1 client, then from 8 at once.

``ragmix serve`` itself, as a process, with the real default generator (smollm2-squad) over
ragmix's docs/ as ``make demo`` indexes them; the clients ask the docs QA questions
(bench/data/docs_qa.jsonl) with the default options (RAG-Sequence, grounded, the default scoring, k=5), as
JSON, each client closed-loop (its next question once its answer is read). A phase starts no
ask after its ``seconds`` and ends when the last answer is in; asks per second is the asks
answered over that time. The generator worker decodes the asks in flight together (its
continuous batching), so 8 clients should get several times the asks per second of one.

Run on its own (a short check, without writing any result)::

    .venv/bin/python bench/_serve_batching.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ragmix._offline import set_offline_defaults

set_offline_defaults()

from _common import median  # noqa: E402
from _serve_load import free_port, launched  # noqa: E402

from ragmix.modes import DEFAULT_GENERATOR, DEFAULT_SCORING  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = (1, 8)
ASK = {"k": 5}  # everything else as ask's defaults: rag-sequence, grounded
LOAD_S = 600  # the first answer loads the generator (converting it, the first time, ~30 s)


def docs_questions() -> list[str]:
    rows = (ROOT / "bench" / "data" / "docs_qa.jsonl").read_text().splitlines()
    return [json.loads(row)["question"] for row in rows if row.strip()]


def docs_collection(folder: Path) -> Path:
    """ragmix's docs/ indexed as ``make demo`` does (the default encoder and chunking)."""
    from ragmix.store import Collection

    with Collection.create(folder) as col:
        col.add([ROOT / "docs"])
    return folder


@contextmanager
def ragmix_serve(collection: Path, data_dir: Path, log: Path, *,
                 generator: str = DEFAULT_GENERATOR) -> Iterator[str]:
    """``ragmix serve`` on ``collection``, on a free loopback port: its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "ragmix", "serve", "-c", str(collection), "--port", str(port),
            "--data-dir", str(data_dir), "--generator", generator]
    with launched(argv, port, log, name="ragmix serve", poll_s=0.5, stop_s=30):
        yield f"http://127.0.0.1:{port}"


async def _phase(url: str, questions: Sequence[str], *, clients: int,
                 seconds: float) -> dict:
    """``clients`` closed-loop clients asking for ``seconds``: asks, errors, time, latencies."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []

    async def client(http, first: int) -> None:
        i = first
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            response = await http.post(url, json={"question": questions[i % len(questions)],
                                                  **ASK})
            if response.status_code == 200 and "text" in response.json():
                latencies.append(time.perf_counter() - began)
            else:
                errors.append(f"{response.status_code}: {response.text[:200]}")
            i += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=LOAD_S) as http:
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(client(http, c) for c in range(clients)))
        elapsed = time.perf_counter() - began
    return {"asks": len(latencies), "errors": len(errors), "elapsed_s": round(elapsed, 2),
            "asks_per_s": round(len(latencies) / elapsed, 4),
            "p50_ms": round(median(latencies) * 1000, 1) if latencies else None,
            "error_samples": errors[:3]}


def batching(work: Path, *, seconds: float, generator: str = DEFAULT_GENERATOR,
             clients: Sequence[int] = CLIENTS) -> dict:
    """The batching section: asks per second with each number of ``clients`` in turn."""
    import httpx

    questions = docs_questions()
    collection = docs_collection(work / "docs")
    with ragmix_serve(collection, work / "batching-data", work / "batching.log",
                      generator=generator) as base:
        url = f"{base}/v1/collections/{collection.name}/ask"
        warm = httpx.post(url, json={"question": questions[0], **ASK}, timeout=LOAD_S)
        warm.raise_for_status()  # the generator is loaded, its first answer given
        phases = {n: asyncio.run(_phase(url, questions, clients=n, seconds=seconds))
                  for n in clients}
    one, most = phases[clients[0]], phases[clients[-1]]
    result = {f"asks_per_s_{n}": phase["asks_per_s"] for n, phase in phases.items()}
    result["ratio"] = (round(most["asks_per_s"] / one["asks_per_s"], 3)
                       if one["asks_per_s"] else None)
    result["errors"] = sum(phase["errors"] for phase in phases.values())
    result["phases"] = {str(n): phase for n, phase in phases.items()}
    result["setup"] = {"generator": generator, "collection": "docs/ as make demo indexes it",
                       "questions": "bench/data/docs_qa.jsonl", "ask": ASK | {
                           "mode": "rag-sequence", "decoding": "grounded", "scoring": DEFAULT_SCORING},
                       "seconds": seconds, "server": "ragmix serve process on 127.0.0.1, "
                       "JSON asks from httpx clients in this process", "target_ratio": 3}
    return result


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--generator", default=DEFAULT_GENERATOR)
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    with tempfile.TemporaryDirectory(prefix="ragmix-batching-") as work:
        result = batching(Path(work), seconds=args.seconds, generator=args.generator)
    print(json.dumps(result, indent=2))  # a check: bench_serve.py --sections batching writes


if __name__ == "__main__":
    main()
