"""ragmix over HTTP: a thin FastAPI layer over collections, search and the answerers.

``pip install 'ragmix[server]'``, then ``ragmix serve --collection DIR``, or in
Python::

    from ragmix.server.app import create_app
    from ragmix.server.settings import ServerSettings

    app = create_app(ServerSettings.build(["my-col"], data_dir="serve-data"))

The modules: ``settings`` (what a server is started with), ``auth`` (API keys,
scopes, rate limits), ``errors`` (RFC 9457 problem details), ``jobs``
(ingestion as job resources), ``uploads`` (where uploaded files are stored),
``catalog`` (collections created over the API), ``worker`` (the one thread that
owns the generator), ``answering`` (request options to ``RAG`` /
``MarginalRAG``, and an answer's citations and provenance), ``sse``
(Server-Sent Events), the routes in ``routes_collections``,
``routes_documents``, ``routes_query`` and ``chat`` (OpenAI-compatible), and
``page`` (the web page in ``static/``), put together by ``app``. Only
``errors``, ``deps``, ``app``, ``page`` and the routes import FastAPI.
"""
