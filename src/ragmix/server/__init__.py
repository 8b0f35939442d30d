"""ragmix over HTTP: a thin FastAPI layer over collections, search and the answerers.

``pip install 'ragmix[server]'``, then ``ragmix serve --collection DIR``, or in
Python::

    from ragmix.server.app import create_app
    from ragmix.server.settings import ServerSettings

    app = create_app(ServerSettings.build(["my-col"], data_dir="serve-data"))

The modules: ``settings`` (what a server is started with), ``auth`` (API keys,
scopes, rate limits), ``errors`` (RFC 9457 problem details), ``jobs``
(ingestion as job resources), ``uploads`` (where uploaded files are stored),
``worker`` (the one thread that owns the generator), ``answering`` (request
options to ``RAG`` / ``MarginalRAG``), ``sse`` (Server-Sent Events), and the
routes in ``routes_documents`` and ``routes_query``, put together by ``app``.
Only ``errors``, ``app`` and the routes import FastAPI.
"""
