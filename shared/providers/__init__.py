"""Who trains and serves a run's model: one package per provider, and this registry of them.

`REGISTRY` is the only list of provider names in the code: `"name": "module:ATTRIBUTE"` of the
provider's `ProviderSpec`, imported on first use so a function loads only the provider it serves.
The template's `DefaultProvider` AllowedValues and the CLI are checked against it (a test).

Adding a provider: a package `shared/providers/<name>/` whose `__init__` holds its `SPEC` (and whose
gateway implements `shared.providers.base.FineTuningProvider`), one line here, and its emulator in
`local/`.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.providers.base import ProviderSpec

REGISTRY: dict[str, str] = {
    "openai": "shared.providers.openai:SPEC",
    "bedrock": "shared.providers.bedrock:SPEC",
    "open": "shared.providers.open:SPEC",
}
PROVIDER_NAMES: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_PROVIDER = PROVIDER_NAMES[0]  # what a run recorded before providers were named was trained by


@cache
def spec(name: str) -> ProviderSpec:
    """The provider's spec; a name not in the registry is a KeyError naming the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
    module, _, attribute = REGISTRY[name].partition(":")
    found: ProviderSpec = getattr(importlib.import_module(module), attribute)
    return found
