"""ragmix serve under load, its HTTP overhead, and a fuzz of its API (issue 15).

    .venv/bin/python bench/bench_serve.py [--data ../shared/data/scifact] [--docs 0]
        [--encoder hashing-256] [--sections load,overhead,fuzz,batching] [--clients 32]
        [--seconds 60] [--ask-share 0.2] [--token-ms 5] [--overhead-queries 300]
        [--fuzz-cases 1000] [--dry-run]

Over a collection of SciFact's corpus (every document by default; hashing-256 by default, so
that a query's embedding costs microseconds and the figures are the server's), served by a
real uvicorn process on 127.0.0.1 whose generator is scripted at a fixed speed (``--token-ms``
per streamed piece, 12 pieces an answer): the bench measures the server, not a model.

  overhead  the same SciFact test queries, one at a time, through HTTP (Python's
            http.client, the headline, and httpx beside it, each on one kept-alive
            connection) and through Collection.search in this process on the same folder,
            each order in turn: the difference of the p50s (target <= 2 ms)
  load      --clients closed-loop clients for --seconds, --ask-share of them asks (streamed
            SSE, read to the final event), the rest searches: requests, errors (target 0),
            p50/p99 per endpoint, the server's resident memory before and after (target:
            growth <= 10%)
  fuzz      Schemathesis on the server's /openapi.json, at least --fuzz-cases generated
            requests on a fresh copy of the collection: 5xx answers and schema violations
            (target 0 each)
  batching  not SciFact nor the scripted generator: `ragmix serve` with the real default
            generator (smollm2-squad) over docs/, default asks (grounded RAG-Sequence, k=5)
            from 1 client for --seconds, then from 8 at once (bench/_serve_batching.py):
            asks per second of each and their ratio (target >= 3)

Results merge into bench/results/serve.json, one key per section (skipped sections keep
their values). --dry-run prints without writing. A full run takes a few minutes on 2 cores,
most of it the 60 s load, the fuzz and the two batching phases.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, median, percentile, require_data, write_result  # noqa: E402
from _serve_batching import batching  # noqa: E402
from _serve_fuzz import fuzz  # noqa: E402
from _serve_load import (  # noqa: E402
    ASK_OPTIONS,
    SEARCH_K,
    build_collection,
    rss_mb,
    run_load,
    server_process,
)

SECTIONS = ("overhead", "load", "fuzz", "batching")
SCIFACT_SECTIONS = ("overhead", "load", "fuzz")
WARMUP = 20  # requests before anything is timed: lazy views, the generator, caches


def test_queries(folder: Path) -> list[str]:
    """SciFact's judged test queries, in file order."""
    test_ids = {line.split("\t")[0]
                for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    return [q["text"] for q in rows if q["_id"] in test_ids]


def overhead(url: str, collection: Path, queries: list[str]) -> dict:
    """p50 of HTTP search minus p50 of in-process search, same queries, interleaved.

    Two clients, each on one kept-alive connection: Python's own ``http.client`` (the
    headline: little beyond the socket, so what remains is the server's cost) and httpx
    (``overhead_httpx_ms_p50``: what a typical Python client adds on top)."""
    import http.client
    from urllib.parse import urlsplit

    import httpx

    from ragmix.store import Collection

    times: dict[str, list[float]] = {"http.client": [], "httpx": [], "library": []}
    parts = urlsplit(url)
    path = f"/v1/collections/{collection.name}/search"
    plain = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    with Collection.open(collection) as col, httpx.Client(timeout=60) as client:

        def over_httpx(query: str) -> None:
            response = client.post(url + path, json={"query": query, "k": SEARCH_K})
            response.raise_for_status()
            response.json()

        def over_http_client(query: str) -> None:
            plain.request("POST", path, body=json.dumps({"query": query, "k": SEARCH_K}),
                          headers={"Content-Type": "application/json"})
            response = plain.getresponse()
            body = response.read()
            if response.status != 200:
                raise SystemExit(f"search answered {response.status}: {body[:300]!r}")
            json.loads(body)

        def in_process(query: str) -> None:
            col.search(query, SEARCH_K, mode="hybrid")

        runs = [("http.client", over_http_client), ("httpx", over_httpx),
                ("library", in_process)]
        for query in queries[:WARMUP]:
            for _, run in runs:
                run(query)
        for i, query in enumerate(queries):
            for name, run in runs[i % 3:] + runs[: i % 3]:  # each order in turn
                began = time.perf_counter()
                run(query)
                times[name].append((time.perf_counter() - began) * 1000)
    plain.close()
    p50 = {name: median(values) for name, values in times.items()}
    return {"overhead_ms_p50": round(p50["http.client"] - p50["library"], 3),
            "overhead_httpx_ms_p50": round(p50["httpx"] - p50["library"], 3),
            "overhead_detail": {"queries": len(queries), "k": SEARCH_K, "retrieval": "hybrid",
                                "http_client_ms_p50": round(p50["http.client"], 3),
                                "httpx_ms_p50": round(p50["httpx"], 3),
                                "library_ms_p50": round(p50["library"], 3)}}


def load(url: str, pid: int, name: str, queries: list[str], args) -> dict:
    """The load section: warm the server up, then ``args.clients`` clients for ``args.seconds``."""
    run_load(url, name, queries, clients=2, seconds=2, ask_share=0.5, seed=10_000)  # warm-up
    rss_start = rss_mb(pid)
    stats = run_load(url, name, queries, clients=args.clients, seconds=args.seconds,
                     ask_share=args.ask_share)
    rss_end = rss_mb(pid)
    return {
        "clients": args.clients, "seconds": args.seconds, "requests": stats.requests,
        "errors": stats.errors,
        "p50_ms": {e: round(percentile(v, 50), 2) for e, v in stats.latencies_ms.items() if v},
        "p99_ms": {e: round(percentile(v, 99), 2) for e, v in stats.latencies_ms.items() if v},
        "requests_per_endpoint": {e: len(v) for e, v in stats.latencies_ms.items()},
        "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_end, 1),
        "rss_growth": round(rss_end / rss_start - 1, 4),
        "ask_share": args.ask_share, "token_ms": args.token_ms, "ask_options": ASK_OPTIONS,
        "search_k": SEARCH_K, "error_samples": stats.error_samples,
    }


def fuzz_section(collection: Path, work: Path, args) -> dict:
    """The fuzz on a copy of the collection (it deletes documents and makes collections)."""
    copy = shutil.copytree(collection, work / "fuzz" / collection.name)
    with server_process(copy, work / "fuzz-data", work / "fuzz.log",
                        token_ms=args.token_ms) as server:
        result = fuzz(server.url, copy.name, cases=args.fuzz_cases)
    return {**result.summary(), "samples": result.samples}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--docs", type=int, default=0, help="corpus documents (0: all ~5k)")
    parser.add_argument("--encoder", default="hashing-256",
                        help="hashing-256 (default) or minilm-int8, minilm")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="the load's, and each of the two batching phases'")
    parser.add_argument("--ask-share", type=float, default=0.2)
    parser.add_argument("--token-ms", type=float, default=5.0,
                        help="the scripted generator's milliseconds per streamed piece")
    parser.add_argument("--overhead-queries", type=int, default=300,
                        help="queries timed both ways (SciFact has 300 test queries)")
    parser.add_argument("--fuzz-cases", type=int, default=1000)
    parser.add_argument("--dry-run", action="store_true", help="print, write no result file")
    args = parser.parse_args()
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for name in ("clients", "seconds", "overhead_queries", "fuzz_cases", "docs", "token_ms"):
        if getattr(args, name) < (0 if name in ("docs", "token_ms") else 1):
            parser.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if not 0 <= args.ask_share <= 1:
        parser.error(f"--ask-share must be in [0, 1], got {args.ask_share}")
    return args


def main() -> None:
    args = arguments()
    path = RESULTS / "serve.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    for stale in ("machine", "measured_at"):
        result.pop(stale, None)
    work = Path(tempfile.mkdtemp(prefix="ragmix-serve-bench-"))
    try:
        if set(SCIFACT_SECTIONS) & set(args.sections):
            scifact_sections(result, work, args)
        if "batching" in args.sections:
            print(f"running batching (1 then 8 clients, {args.seconds:g} s each) ...",
                  flush=True)
            result["batching"] = batching(work, seconds=args.seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(result)
    if args.dry_run:
        print("dry run: no result file written")
    else:
        print(f"wrote {write_result(path.name, result)}")


def scifact_sections(result: dict, work: Path, args) -> None:
    """The overhead, load and fuzz sections, on SciFact with the scripted generator."""
    folder = require_data(args.data)
    queries = test_queries(folder)
    print(f"building the collection ({args.encoder}, {args.docs or 'all'} docs) ...",
          flush=True)
    collection = build_collection(work / "scifact", folder / "corpus.jsonl",
                                  docs=args.docs, encoder=args.encoder)
    if {"overhead", "load"} & set(args.sections):
        with server_process(collection, work / "data", work / "serve.log",
                            token_ms=args.token_ms) as server:
            if "overhead" in args.sections:
                print("running overhead ...", flush=True)
                result.update(overhead(server.url, collection,
                                       (queries * 2)[: args.overhead_queries]))
            if "load" in args.sections:
                print(f"running load ({args.clients} clients, {args.seconds:g} s) ...",
                      flush=True)
                result["load"] = load(server.url, server.pid, collection.name, queries, args)
    if "fuzz" in args.sections:
        print(f"running fuzz ({args.fuzz_cases} cases) ...", flush=True)
        result["fuzz"] = fuzz_section(collection, work, args)
    result["setup"] = {"corpus": str(args.data.name), "docs": args.docs or "all",
                       "encoder": args.encoder, "server": "uvicorn process on 127.0.0.1, "
                       "clients in this process (httpx)"}


def report(result: dict) -> None:
    print(f"\n{'metric':<34}{'value':>12}  target")
    if "overhead_ms_p50" in result:
        print(f"{'overhead_ms_p50 (search)':<34}{result['overhead_ms_p50']:>12}  <= 2")
        print(f"{'  with httpx as the client':<34}{result['overhead_httpx_ms_p50']:>12}")
    if "load" in result:
        got = result["load"]
        print(f"{'load requests':<34}{got['requests']:>12}")
        print(f"{'load errors':<34}{got['errors']:>12}  0")
        for endpoint, p50 in got["p50_ms"].items():
            both = f"{p50} / {got['p99_ms'][endpoint]}"
            print(f"{'load ' + endpoint + ' p50 / p99 ms':<34}{both:>12}")
        rss = f"{got['rss_mb_start']} -> {got['rss_mb_end']}"
        print(f"{'load rss MB start -> end':<34}{rss:>12}  growth <= 10%")
    if "fuzz" in result:
        got = result["fuzz"]
        print(f"{'fuzz cases':<34}{got['cases']:>12}  >= 1000")
        print(f"{'fuzz server errors':<34}{got['server_errors']:>12}  0")
        print(f"{'fuzz schema violations':<34}{got['schema_violations']:>12}  0")
        for sample in got["samples"]:
            print("  ", sample[:500])
    if "batching" in result:
        got = result["batching"]
        for key in ("asks_per_s_1", "asks_per_s_8", "ratio", "errors"):
            target = {"ratio": ">= 3", "errors": "0"}.get(key, "")
            print(f"{'batching ' + key:<34}{got[key]!s:>12}  {target}")


if __name__ == "__main__":
    main()
