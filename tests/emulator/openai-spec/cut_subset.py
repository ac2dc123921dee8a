"""Cut the vendored subset of OpenAI's OpenAPI spec out of a full copy.

    python tests/emulator/openai-spec/cut_subset.py path/to/openai-openapi/openapi.yaml

writes ``openapi.yaml`` beside this script: the operations in OPERATIONS (what the
OpenAI emulator serves and the project calls), every component they reference,
transitively, and the spec's header (openapi, info, servers, security,
securitySchemes). Docs-only metadata (``x-oaiMeta``: code samples) and tags are
left out. Nothing else is changed, so the cut validates exactly as the full spec.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

OUTPUT = Path(__file__).resolve().parent / "openapi.yaml"
# (method, path) as in the spec's `paths:` (no /v1 prefix); keep in step with the emulator's ROUTES.
OPERATIONS = [
    ("post", "/files"),
    ("get", "/files"),
    ("get", "/files/{file_id}"),
    ("delete", "/files/{file_id}"),
    ("get", "/files/{file_id}/content"),
    ("post", "/uploads"),
    ("post", "/uploads/{upload_id}/parts"),
    ("post", "/uploads/{upload_id}/complete"),
    ("post", "/fine_tuning/jobs"),
    ("get", "/fine_tuning/jobs"),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}"),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/events"),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel"),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/pause"),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/resume"),
    ("post", "/chat/completions"),
    ("get", "/models/{model}"),
]
ALWAYS_KEPT_COMPONENTS = [("schemas", "ErrorResponse"), ("schemas", "Error")]
HEADER = ["openapi", "info", "servers", "security"]
DOCS_ONLY = "x-oaiMeta"


def _refs(node: Any) -> set[tuple[str, str]]:
    """Every '#/components/<kind>/<name>' referenced anywhere under node."""
    found: set[tuple[str, str]] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/"):
                kind, name = ref.removeprefix("#/components/").split("/", 1)
                found.add((kind, name))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_docs(value) for key, value in node.items() if key != DOCS_ONLY}
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    return node


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, as upstream writes them, so the file reads like the original."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


def cut(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        item = spec["paths"][path]
        kept = paths.setdefault(path, {key: value for key, value in item.items() if key == "parameters"})
        kept[method] = _without_docs(item[method])
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths) | set(ALWAYS_KEPT_COMPONENTS)
    while pending:
        kind, name = pending.pop()
        if name in components.get(kind, {}):
            continue
        component = _without_docs(spec["components"][kind][name])
        components.setdefault(kind, {})[name] = component
        pending |= _refs(component)
    components["securitySchemes"] = spec["components"]["securitySchemes"]
    ordered = {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())}
    return {**{key: spec[key] for key in HEADER if key in spec}, "paths": paths, "components": ordered}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with Path(argv[0]).open(encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    subset = cut(spec)
    header = (
        "# A subset of OpenAI's OpenAPI spec (openai/openai-openapi, MIT licence: see LICENSE beside this file),\n"
        "# cut by cut_subset.py; see README.md for the upstream commit. Do not edit by hand: re-cut instead.\n"
    )
    OUTPUT.write_text(
        header + yaml.dump(subset, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096), encoding="utf-8"
    )
    counts = {kind: len(items) for kind, items in subset["components"].items()}
    print(f"wrote {OUTPUT}: {len(OPERATIONS)} operations, components {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
