"""Model names as the two LiteLLM paths write them, brought to one form before they are compared.

For one request, LiteLLM's Lago callback sends `kwargs["model"]`, the requested model with
its provider route stripped, while the spend log keeps the standard logging payload's model:
behind a router the deployment's model as configured (`together_ai/meta-llama/...`,
`openrouter/openai/gpt-4o`), and for Bedrock `bedrock/` put back (`bedrock/us.anthropic...`
against `us.anthropic...`); `/responses` events keep the route the row has (`openai/gpt-4o-mini`
on both sides). Checked on LiteLLM 1.110.2 with its own `get_logging_payload` and `LagoLogger`
(tests/test_litellm_interop.py). In every case the two names are equal once the row's
`custom_llm_provider` is stripped from the front of both. So, on both sides, leading segments
that name a provider of the window's rows are stripped: `openrouter/openai/gpt-4o` and
`openai/gpt-4o` both read `gpt-4o` when both providers logged rows, and names that differ
only by such a route compare equal.
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa


def model_key(model: str | None, providers: Collection[str]) -> str | None:
    """A model name without its leading provider routes (segments naming one of `providers`)."""
    while model:
        head, separator, rest = model.partition("/")
        if not separator or not rest or head not in providers:
            break
        model = rest
    return model


def model_keys(models: pa.Array, providers: Collection[str]) -> pa.Array:
    """`model_key` of distinct model names (a few dozen: a Python loop is fine)."""
    if not providers:
        return models
    return pa.array([model_key(name, providers) for name in models.to_pylist()], pa.large_string())
