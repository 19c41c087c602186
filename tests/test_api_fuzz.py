"""Property-based fuzzing of the whole API from its OpenAPI document (Schemathesis) against the real server.

Every operation gets generated requests (ids: random ones, or real records of the caller's clinic and of
another clinic). Checks: no 5xx, status codes / content types / headers / bodies as documented, and no
answer ever carries the other clinic's records. Bounded (examples per operation) to run in minutes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_api
from tests.api_stack import Stack, start_stack, stop_stack

schema = schemathesis.openapi.from_dict(create_api(lambda: None).openapi())  # type: ignore[arg-type, return-value]
#: Examples per operation: 25 keeps `make test` to about a minute; API_FUZZ_EXAMPLES=200 for a deeper run.
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def stack(servers, tmp_path_factory) -> Iterator[Stack]:
    stack, process = start_stack(servers, tmp_path_factory.mktemp("api-fuzz"), API_RATE_PER_MINUTE="100000")
    yield stack
    stop_stack(stack, process)


def test_the_served_document_is_the_one_fuzzed(stack: Stack):
    served = httpx.get(f"{stack.url}/api/openapi.json", timeout=30).json()
    assert served["paths"] == schema.raw_schema["paths"]


def _records(stack: Stack, clinic: str) -> list[str]:
    setup = stack.alpha if clinic == "alpha" else stack.beta
    return [setup.approved.id, setup.draft.id, setup.world.patient.id]


def _leaks(stack: Stack, text: str) -> list[str]:
    beta = stack.beta
    secrets = [*_records(stack, "beta"), beta.world.patient.lastName, beta.approved.name, beta.draft.name]
    return [s for s in secrets if s in text]


@schema.parametrize()
@schema.given(pick=st.integers(min_value=0, max_value=8))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
          database=None)
def test_fuzzed_requests_get_documented_answers_and_never_another_clinics_data(case, pick, stack: Stack):
    records = _records(stack, "alpha") + _records(stack, "beta")
    if pick < len(records):  # a real id (of this clinic or the other) in every id-shaped place
        for name in ("id", "patientId"):
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = records[pick]
        if isinstance(case.body, dict) and "patientId" in case.body:
            case.body["patientId"] = records[pick]
    headers = {"Authorization": f"Bearer {stack.alpha.tokens['coordinator']}"}
    response = case.call_and_validate(base_url=f"{stack.url}/api", headers=headers, checks=CHECKS)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body.pop("instance", None)  # the problem's `instance` echoes the path that was asked for
    assert _leaks(stack, json.dumps(body, default=str)) == [], (case.method, case.path, response.status_code)
