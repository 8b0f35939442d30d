"""The server side and the client side of bench_serve: a generator of fixed speed, the server as a
process of its own, and closed-loop HTTP clients.

The server is a real uvicorn process on 127.0.0.1 (as ``ragmix serve`` runs it), so the clients
share no interpreter, no GIL and no memory with it, and its resident memory is its own. Run as
a script, this module is that process::

    python bench/_serve_load.py --collection DIR --data-dir DIR --port 8123 [--token-ms 5]

tests/test_server_load.py runs a short load and fuzz through these same functions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from ragmix.testing import ScriptedGenerator

ANSWER = "The passages say that it does, as the first one shows [1]."  # 12 streamed pieces
SEARCH_K, ASK_K = 10, 5
STARTUP_S = 120  # importing FastAPI, opening the collection; a busy 2-core machine is slow
# An ask in the load: "stuff" with free decoding is the one mode a scripted generator serves
# (grounded decoding spells passages with a real tokenizer), and streamed as the page asks.
ASK_OPTIONS = {"mode": "stuff", "decoding": "free", "k": ASK_K, "stream": True}


class PacedGenerator(ScriptedGenerator):
    """A scripted generator of fixed speed: ``token_s`` seconds per streamed piece.

    It stands for the model, so that a load measures the server around it. It keeps only
    the last few prompts: over a long load, a list of them all would grow the server's memory.
    """

    def __init__(self, answer: str = ANSWER, *, token_s: float) -> None:
        super().__init__(answer, name="paced-scripted")
        if not token_s >= 0:
            raise ValueError(f"token_s must be >= 0, got {token_s!r}")
        self.token_s = token_s
        self.prompts = deque(maxlen=4)  # type: ignore[assignment]

    def generate(self, prompt: str, *, max_new_tokens: int = 256,
                 on_token: Callable[[str], None] | None = None) -> str:
        def paced(piece: str) -> None:
            time.sleep(self.token_s)
            if on_token is not None:
                on_token(piece)

        return super().generate(prompt, max_new_tokens=max_new_tokens, on_token=paced)


def build_collection(folder: Path, corpus: Path, *, docs: int, encoder: str) -> Path:
    """A collection of the first ``docs`` rows of a BEIR ``corpus.jsonl`` (0: all of them)."""
    from ragmix.documents import load_paths
    from ragmix.store import Collection

    with Collection.create(folder, encoder=encoder) as col:
        col.add_documents(islice(load_paths([corpus]), docs or None))
    return folder


# -- the server process -----------------------------------------------------------------------

def serve(collection: Path, data_dir: Path, port: int, token_ms: float) -> None:
    """Serve ``collection`` as ``ragmix serve`` does, with a :class:`PacedGenerator`."""
    import uvicorn

    from ragmix.server.app import create_app
    from ragmix.server.settings import ServerSettings

    generator = PacedGenerator(token_s=token_ms / 1000)
    settings = ServerSettings.build([collection], data_dir=data_dir,
                                    generator=lambda: generator)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="info",
                timeout_graceful_shutdown=10)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(collection: Path, data_dir: Path, log: Path, *,
                   token_ms: float) -> Iterator[Server]:
    """This module serving ``collection`` on a free loopback port; stopped by its PID."""
    port = free_port()
    argv = [sys.executable, __file__, "--collection", str(collection), "--data-dir",
            str(data_dir), "--port", str(port), "--token-ms", str(token_ms)]
    with launched(argv, port, log) as process:
        yield Server(f"http://127.0.0.1:{port}", process.pid)


@contextmanager
def launched(argv: list[str], port: int, log: Path, *, name: str = "the server",
             poll_s: float = 0.2, stop_s: float = 15) -> Iterator[subprocess.Popen]:
    """Run ``argv`` (a server on ``port``) until it answers /v1/collections; stop it by its PID.

    Its stderr goes to ``log`` (a file, not a pipe: a full pipe would stall the server).
    """
    import httpx

    with open(log, "w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: "
                                   f"{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/collections", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within {STARTUP_S} s; see {log}")
            time.sleep(poll_s)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MB (10^6 bytes)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6  # the kernel's kB are KiB
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status") from None
    return psutil.Process(pid).memory_info().rss / 1e6


# -- the clients --------------------------------------------------------------------------------

@dataclass
class LoadStats:
    """What the clients saw: milliseconds per finished request, by endpoint, and the errors."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"search": [],
                                                                          "ask": []})
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)  # the first few, to say why

    @property
    def requests(self) -> int:
        return sum(map(len, self.latencies_ms.values())) + self.errors

    def failed(self, why: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(why[:300])


async def _search(client, url: str, query: str) -> str | None:
    response = await client.post(url + "/search", json={"query": query, "k": SEARCH_K})
    if response.status_code != 200:
        return f"search {response.status_code}: {response.text}"
    return None if "hits" in response.json() else f"search without hits: {response.text}"


async def _ask(client, url: str, question: str) -> str | None:
    """Ask as a stream, read to its end: an error unless the last event is ``final``."""
    async with client.stream("POST", url + "/ask", json={"question": question,
                                                         **ASK_OPTIONS}) as response:
        body = (await response.aread()).decode()
    if response.status_code != 200:
        return f"ask {response.status_code}: {body}"
    events = [line[len("event: "):] for line in body.splitlines() if line.startswith("event: ")]
    if not events or events[-1] != "final":
        return f"ask stream ended with {events[-1:] or 'no event'}: {body[-300:]}"
    return None


async def _client(client, url: str, queries: Sequence[str], rng: random.Random,
                  deadline: float, ask_share: float, stats: LoadStats) -> None:
    """One closed-loop client: a request, its answer read whole, the next request."""
    import httpx

    while time.perf_counter() < deadline:
        endpoint = "ask" if rng.random() < ask_share else "search"
        query = rng.choice(queries)
        began = time.perf_counter()
        try:
            why = await (_ask if endpoint == "ask" else _search)(client, url, query)
        except httpx.HTTPError as exc:
            why = f"{endpoint}: {type(exc).__name__}: {exc}"
        if why is None:
            stats.latencies_ms[endpoint].append((time.perf_counter() - began) * 1000)
        else:
            stats.failed(why)


async def _load(base: str, collection: str, queries: Sequence[str], *, clients: int,
                seconds: float, ask_share: float, seed: int) -> LoadStats:
    import httpx

    stats = LoadStats()
    url = f"{base}/v1/collections/{collection}"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(
            _client(client, url, queries, random.Random(seed + i), deadline, ask_share, stats)
            for i in range(clients)))
    return stats


def run_load(base: str, collection: str, queries: Sequence[str], *, clients: int,
             seconds: float, ask_share: float = 0.2, seed: int = 0) -> LoadStats:
    """``clients`` concurrent clients for ``seconds``: ``ask_share`` of requests ask (streamed),
    the rest search; each client draws its requests from its own seeded generator."""
    if clients < 1 or seconds <= 0 or not 0 <= ask_share <= 1 or not queries:
        raise ValueError(f"need clients >= 1, seconds > 0, ask_share in [0, 1] and queries; got "
                         f"{clients}, {seconds}, {ask_share} and {len(queries)} queries")
    return asyncio.run(_load(base, collection, queries, clients=clients, seconds=seconds,
                             ask_share=ask_share, seed=seed))


def main() -> None:
    parser = argparse.ArgumentParser(description="serve a collection with a paced generator")
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-ms", type=float, default=5.0)
    args = parser.parse_args()
    serve(args.collection, args.data_dir, args.port, args.token_ms)


if __name__ == "__main__":
    main()
