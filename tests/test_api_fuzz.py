"""Fuzz the API from its own OpenAPI document (schemathesis): no 5xx, and every answer conforms to the document.

Every operation gets generated requests, valid and invalid (schemathesis' default
checks: no server error, status codes, content types, headers and bodies as
documented, valid data accepted, invalid data rejected, auth not ignored), sent
with tenant A's admin key to a worker that holds two tenants' data.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api_support import World, api_world  # noqa: F401 (fixture)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def api_schema(api_world: World) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(api_world.settings.api_url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_document(case: schemathesis.Case, api_world: World) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {api_world.a.admin_key}"})
