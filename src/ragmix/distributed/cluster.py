"""Connecting to Ray: an existing cluster by address, or a small local one on this machine."""

from __future__ import annotations

import os
from types import ModuleType

from ragmix._extras import require
from ragmix.errors import BadInputError

# A local cluster's shared-memory object store. Ray's default is 30% of RAM (7 GB on a
# 24 GiB machine); ragmix sends only text batches, vectors and top-k results through it,
# so 1 GiB is plenty and leaves the memory to the encoder and the index.
LOCAL_OBJECT_STORE_BYTES = 1 << 30

# Set before Ray starts: no usage reports leave the machine. On a busy two-core machine
# the raylet waited 16 s for its agent process and aborted startup; two minutes is
# enough there and costs nothing when the agent is quick.
RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_agent_register_timeout_ms": "120000",
}


def ray_module() -> ModuleType:
    """``ray``, imported with :data:`RAY_ENVIRONMENT` defaults, or a MissingExtraError."""
    for name, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return require("ray", "ray")


def connect(address: str | None = None, *, num_cpus: int | None = None,
            object_store_memory: int = LOCAL_OBJECT_STORE_BYTES,
            log_to_driver: bool = False) -> None:
    """Attach this process to Ray: the cluster at ``address``, or a new local one.

    ``address`` is what ``ray start --head`` printed (``"10.0.0.5:6379"``), ``"auto"``
    for the cluster this machine already runs, or ``ray://host:10001`` for Ray Client.
    Without it a local cluster starts on 127.0.0.1 with ``num_cpus`` (default: all)
    and ``object_store_memory`` bytes of object store, without the dashboard. A
    process already connected stays connected (to whatever it was connected to).
    Workers' output stays in Ray's logs unless ``log_to_driver``: the library never prints.

    Example::

        connect()                           # a local cluster, for one machine
        connect("auto")                     # the cluster `ray start --head` runs here
        connect("ray://head.internal:10001")
    """
    ray = ray_module()
    if ray.is_initialized():
        return
    if object_store_memory < 75 * 1024 * 1024:
        raise BadInputError(f"object_store_memory must be at least 75 MiB (Ray's minimum), "
                            f"got {object_store_memory} bytes")
    if num_cpus is not None and num_cpus <= 0:
        raise BadInputError(f"num_cpus must be > 0, got {num_cpus}")
    if address is not None:
        # A running cluster has its own resources and dashboard settings.
        ray.init(address=address, log_to_driver=log_to_driver)
        return
    ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory,
             include_dashboard=False, log_to_driver=log_to_driver)


def shutdown() -> None:
    """Disconnect from Ray (and stop the local cluster :func:`connect` started, if any)."""
    ray = ray_module()
    if ray.is_initialized():
        ray.shutdown()
