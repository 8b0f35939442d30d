"""``ragmix serve``: the HTTP API over collections (``pip install 'ragmix[server]'``)."""

from __future__ import annotations

import click

from ragmix.modes import DEFAULT_GENERATOR
from rich.console import Console

from ragmix.cli.options import RerankSpec, collection_location, dtype_option, store_option

err = Console(stderr=True)


@click.command()
@click.option("--collection", "-c", "collections", multiple=True, required=True,
              help="A collection to serve, repeatable: a directory (its URL name is the "
                   "folder's) or postgresql://USER@HOST:PORT/DB?collection=NAME (named NAME).")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; other than loopback only with API keys.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--api-keys", "api_keys", type=click.Path(dir_okay=False, exists=True),
              default=None, help="File of API keys, one per line, each optionally followed by "
              "scopes (KEY read,write); also read from $RAGMIX_API_KEYS. None: open, loopback "
              "only.")
@click.option("--generator", default=DEFAULT_GENERATOR, show_default=True, envvar="RAGMIX_GENERATOR",
              help="smollm2-squad (SmolLM2 with ragmix's SQuAD reader adapter), smollm2 "
                   "(as packaged) or a local Hugging Face model folder; loaded at the "
                   "first question.")
@click.option("--data-dir", default=".ragmix-serve", show_default=True,
              type=click.Path(file_okay=False), envvar="RAGMIX_SERVE_DATA",
              help="Where uploads and job records are kept ($RAGMIX_SERVE_DATA).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=20.0,
              show_default=True, help="Largest file one upload may hold.")
@click.option("--rate-limit", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Requests per second per key (0: no limit).")
@click.option("--rate-burst", type=click.IntRange(min=1), default=20, show_default=True,
              help="Requests a key may make at once before --rate-limit applies.")
@click.option("--rerank", type=RerankSpec(), default=None,
              help="The reranker requests with \"rerank\": true use (loaded at the first one); "
                   "a chain as in ragmix search --help.")
@click.option("--rerank-model", default=None, metavar="PATH", multiple=True,
              help="The reranker's model, or one per reranker of a chain (see ragmix search "
                   "--help).")
@click.option("--rerank-weight", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="The reranker's share when fused with the first stage's scores.")
@dtype_option
def serve(collections, store, host, port, api_keys, generator, data_dir, max_upload_mb,
          rate_limit, rate_burst, rerank, rerank_model, rerank_weight, dtype):
    """Serve collections over HTTP: search, cited answers (JSON or SSE), uploads.

    \b
    ragmix serve -c my-col
    ragmix serve -c docs -c wiki --host 0.0.0.0 --api-keys keys.txt
    ragmix serve -c 'postgresql://me@db:5432/rag?collection=notes'
    curl -s localhost:8000/v1/collections

    Interactive docs at /docs, the schema at /openapi.json.
    """
    from ragmix._extras import require

    for module in ("fastapi", "uvicorn", "python_multipart", "fastapi_offline"):
        require(module, "server")
    import uvicorn

    from ragmix.server.app import create_app
    from ragmix.server.auth import KeyRing, RateLimit, check_bind
    from ragmix.server.settings import Limits, ServerSettings

    keys = KeyRing.load(api_keys)
    check_bind(host, keys)
    upload_bytes = int(max_upload_mb * 1_000_000)
    limits = Limits(max_upload_bytes=upload_bytes,
                    max_body_bytes=max(Limits().max_body_bytes, 3 * upload_bytes))
    settings = ServerSettings.build(
        [collection_location(c, store) for c in collections], data_dir=data_dir, generator=generator, keys=keys, limits=limits,
        rate_limit=RateLimit(rate_limit, rate_burst) if rate_limit else None, dtype=dtype,
        reranker=rerank, rerank_model=rerank_model, rerank_weight=rerank_weight)
    app = create_app(settings)
    names = ", ".join(settings.collections)
    access = f"{len(keys)} API key(s)" if keys else "no keys: open to this machine only"
    err.print(f"[green]serving[/] {names} on http://{host}:{port} ({access}); docs at /docs")
    # open streams get 10 s to finish on Ctrl-C / SIGTERM, then they are cut
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
