"""Schemathesis against the live app (real uvicorn, real database and Redis): no input is a 500,
and every status the API answers is one its OpenAPI schema documents, with a body that matches it.

Every generated case is sent twice: as generated (unknown ids, malformed values) and with the
ids of a chat and workspace the caller belongs to, so that the member paths are exercised too.
(Schemathesis' own pytest loader does not run under this pytest, so each operation's strategy is
driven with Hypothesis directly.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25  # per operation; the whole run stays within ~30 s


def _as_member(case, chat) -> None:
    if case.path_parameters and "chat_id" in case.path_parameters:
        case.path_parameters["chat_id"] = str(chat.id)
    if case.query and "workspace" in case.query:
        case.query["workspace"] = str(chat.workspace_id)
    if isinstance(case.body, dict) and "workspace" in case.body:
        case.body["workspace"] = str(chat.workspace_id)


def test_no_input_is_a_server_error_and_every_status_is_documented(live_server_url, token, chat):
    schema = schemathesis.openapi.from_url(live_server_url + "/api/schema")
    headers = {"Authorization": f"Token {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case):
            case.call_and_validate(base_url=live_server_url, headers=headers, checks=CHECKS)
            _as_member(case, chat)
            case.call_and_validate(base_url=live_server_url, headers=headers, checks=CHECKS)

        fuzz()
