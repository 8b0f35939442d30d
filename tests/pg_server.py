"""The tests' throwaway PostgreSQL + pgvector server (``tests/conftest.py`` starts one per session).

The code is :mod:`ragmix.store.pg.local_server`, which ``bench/bench_pg.py`` uses too.
"""

from ragmix.store.pg.local_server import (  # noqa: F401
    SERVER_SETTINGS,
    PgServer,
    PgServerError,
    bin_dir,
    running_server,
)
