"""docs/openapi.json is what the ask API's routes generate now: the published contract cannot drift."""

from __future__ import annotations

import json

from functions.ask.app import OPENAPI_PATH, openapi_document


def test_committed_openapi_document_is_current() -> None:
    committed = OPENAPI_PATH.read_text(encoding="utf-8")

    assert committed == openapi_document(), (
        "docs/openapi.json is stale; regenerate it with `python -m functions.ask.app`"
    )


def test_every_route_requires_the_api_key_and_documents_its_success() -> None:
    document = json.loads(openapi_document())

    assert document["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
    }
    assert document["security"] == [{"apiKey": []}]
    success = {
        (path, method): min(operation["responses"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert success == {
        ("/ask", "post"): "200",
        ("/runs", "get"): "200",
        ("/runs/{run_id}", "get"): "200",
        ("/runs/{run_id}/cancel", "post"): "202",
        ("/runs/{run_id}/model", "delete"): "200",
        ("/runs/{run_id}/evaluation", "get"): "200",
        ("/runs/{run_id}/evaluation", "post"): "202",
        ("/runs/{run_id}/evaluation/answers", "get"): "200",
        ("/runs/{run_id}/curve", "get"): "200",
    }


def test_the_documents_question_pattern_names_exactly_the_blanks_the_api_strips() -> None:
    """A question of nothing but QUESTION_BLANKS is refused by both; any other character makes it a question."""
    import re
    import sys

    from shared.domain.api_models import QUESTION_BLANKS

    document = json.loads(openapi_document())
    pattern = document["components"]["schemas"]["AskRequest"]["properties"]["question"]["pattern"]
    refused = {character for character in map(chr, range(sys.maxunicode + 1)) if not re.search(pattern, character)}
    assert refused == set(QUESTION_BLANKS)
