"""Which model name LiteLLM's Lago callback sends for a spend-log row's model (provisional)."""

from __future__ import annotations

import pyarrow as pa


def callback_model(model: str | None, provider: str | None) -> str | None:
    """One model name as the callback would send it: the provider route stripped."""
    if model and provider and model.startswith(f"{provider}/"):
        return model[len(provider) + 1 :]
    return model


def callback_models(models: pa.Array, providers: pa.Array | None) -> pa.Array:
    """Distinct model names (with their rows' providers, or None) as the callback sends them."""
    given = providers.to_pylist() if providers is not None else [None] * len(models)
    names = [
        callback_model(model, provider)
        for model, provider in zip(models.to_pylist(), given, strict=True)
    ]
    return pa.array(names, pa.large_string())
