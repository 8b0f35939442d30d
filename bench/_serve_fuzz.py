"""Schemathesis against a live server's own ``/openapi.json``: 5xx answers and schema breaks.

Every operation is fuzzed with data that fits its schema (positive) and data that does not
(negative). Operations on a collection are fuzzed twice more with the served collection's
name, since a random name only ever reaches the 404 of an unknown collection. Collections
the fuzz creates get a hashing encoder, so it exercises the API, not the loading of MiniLM.
Passes with a new seed run until ``cases`` cases were sent (or no operation yields more).
"""

from __future__ import annotations

import math
from itertools import count
from dataclasses import dataclass, field
from typing import Any

MAX_SAMPLES = 10  # failures kept with their reproduction, to say what broke


@dataclass
class FuzzResult:
    cases: int = 0
    server_errors: int = 0  # answers with a 5xx status, or no answer at all
    schema_violations: int = 0  # status, content type, headers or body not as documented
    operations: int = 0
    samples: list[str] = field(default_factory=list)

    def record(self, kind: str, text: str) -> None:
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(f"{kind}: {text[:1500]}")

    def summary(self) -> dict[str, int]:
        return {"cases": self.cases, "server_errors": self.server_errors,
                "schema_violations": self.schema_violations, "operations": self.operations}


def _checks() -> list:
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [status_code_conformance, content_type_conformance, response_headers_conformance,
            response_schema_conformance]


def _strategies(operations: list[Any], collection: str) -> list[Any]:
    """A strategy for each operation and generation mode, steered where it helps."""
    from schemathesis import GenerationMode

    out = []
    for operation in operations:
        named = "name" in {p.name for p in operation.path_parameters}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            out.append(operation.as_strategy(mode))
            if named:
                out.append(operation.as_strategy(mode, path_parameters={"name": collection}))
    return out


def _steer(case: Any, collection: str, rng_bit: int) -> None:
    """Cheap encoders for created collections; half the chat requests name the collection."""
    body = getattr(case, "body", None)
    if not isinstance(body, dict):
        return
    if case.path == "/v1/collections" and case.method.upper() == "POST":
        if isinstance(body.get("encoder"), str) and not body["encoder"].startswith("hashing"):
            body["encoder"] = "hashing-64"
    elif case.path == "/v1/chat/completions" and rng_bit and "model" in body:
        body["model"] = collection


def _send(case: Any, base: str, result: FuzzResult, checks: list) -> None:
    import requests

    try:
        response = case.call(base_url=base, timeout=60)
    except requests.exceptions.InvalidHeader:  # refused by the client before it was sent
        return
    except requests.RequestException as exc:  # no answer: the server failed the request
        result.cases += 1
        result.server_errors += 1
        result.record("no answer", f"{case.method} {case.formatted_path}: {exc}")
        return
    result.cases += 1
    if response.status_code >= 500:
        result.server_errors += 1
        result.record("5xx", f"{case.as_curl_command()} -> {response.status_code} "
                      f"{response.text}")
    try:
        case.validate_response(response, checks=checks)
    except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis Failure(Group)
        result.schema_violations += 1
        result.record("schema", f"{case.as_curl_command()} -> {exc}")


def _run(strategy: Any, per: int, seed: int, send) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed
    from hypothesis.errors import Unsatisfiable

    @with_seed(seed)
    @settings(max_examples=per, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategy)
    def fuzz_one(case):
        send(case)

    try:
        fuzz_one()
    except Unsatisfiable:  # an operation with no invalid inputs (GET /v1/vocabulary)
        pass


def fuzz(base: str, collection: str, *, cases: int, seed: int = 0) -> FuzzResult:
    """At least ``cases`` generated requests against the server at ``base``."""
    import schemathesis

    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [found.ok() for found in schema.get_all_operations()]
    result, checks, sent = FuzzResult(operations=len(operations)), _checks(), count()

    def send(case: Any) -> None:
        _steer(case, collection, next(sent) % 2)
        _send(case, base, result, checks)

    active, passes = _strategies(operations, collection), 0
    while result.cases < cases and active:
        per = math.ceil((cases - result.cases) / len(active))
        still = []
        for strategy in active:
            before = result.cases
            _run(strategy, per, seed + passes, send)
            if result.cases - before >= per:  # it could give more: it stays for the next pass
                still.append(strategy)
        active, passes = still, passes + 1
    return result
