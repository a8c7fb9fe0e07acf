"""Model names as the two LiteLLM paths write them, brought to one form before they are compared.

For one request, LiteLLM's Lago callback sends `kwargs["model"]`, the requested model with
its provider route stripped, while the spend log keeps the standard logging payload's model:
behind a router the deployment's model as configured (`together_ai/meta-llama/...`,
`openrouter/openai/gpt-4o`), and for Bedrock `bedrock/` put back (`bedrock/us.anthropic...`
against `us.anthropic...`); `/responses` events keep the route the row has (`openai/gpt-4o-mini`
on both sides). Checked on LiteLLM 1.110.2 with its own `get_logging_payload` and `LagoLogger`
(tests/test_litellm_interop.py): in every case the two names are equal once the row's
`custom_llm_provider` is stripped from the front of both.

A row's key is its model without its own provider's route (`custom_llm_provider`, when
LiteLLM logged one), then, on both sides, without leading segments naming any provider
LiteLLM knows (PROVIDERS): `openrouter/openai/gpt-4o` and `openai/gpt-4o` both read `gpt-4o`.
A name's key depends only on the name and its own row, never on the other rows of a window.
"""

from __future__ import annotations

import pyarrow as pa

#: Every provider route LiteLLM 1.110.2 knows (`litellm.provider_list`); the interop tests
#: fail when an installed LiteLLM knows one more.
PROVIDERS = frozenset(
    {
        "a2a",
        "a2a_agent",
        "abliteration",
        "ai21",
        "ai21_chat",
        "aiand",
        "aiml",
        "aiohttp_openai",
        "amazon_nova",
        "anthropic",
        "anthropic_text",
        "apertis",
        "assemblyai",
        "auto_router",
        "aws_polly",
        "aws_textract",
        "azure",
        "azure_ai",
        "azure_speech",
        "azure_text",
        "baseten",
        "bedrock",
        "bedrock_mantle",
        "bespoke",
        "bigmodel",
        "black_forest_labs",
        "bytez",
        "cerebras",
        "charity_engine",
        "chatgpt",
        "chutes",
        "clarifai",
        "clf_ai_gateway",
        "cloudflare",
        "codestral",
        "cognition",
        "cohere",
        "cohere_chat",
        "cometapi",
        "compactifai",
        "coralbricks",
        "cortecs",
        "cursor",
        "custom",
        "custom_openai",
        "darkbloom",
        "dashscope",
        "databricks",
        "databricks_agent",
        "datarobot",
        "deepgram",
        "deepinfra",
        "deepseek",
        "docker_model_runner",
        "dotprompt",
        "edenai",
        "elevenlabs",
        "empiriolabs",
        "empower",
        "eu_jev",
        "fal_ai",
        "featherless_ai",
        "fireworks_ai",
        "friendliai",
        "galadriel",
        "gdc",
        "gemini",
        "gigachat",
        "github",
        "github_copilot",
        "gradient_ai",
        "groq",
        "helicone",
        "heroku",
        "hosted_vllm",
        "hostinger_router",
        "huggingface",
        "humanloop",
        "hyperbolic",
        "inception",
        "inferenceapis",
        "infinity",
        "jina_ai",
        "kyma",
        "lambda_ai",
        "langflow",
        "langfuse",
        "langgraph",
        "laya",
        "lemonade",
        "libertai",
        "litellm_agent",
        "litellm_proxy",
        "llamafile",
        "lm_studio",
        "manus",
        "maritalk",
        "meta",
        "meta_llama",
        "microsoft_365_copilot",
        "milvus",
        "minimax",
        "mistral",
        "modelscope",
        "mongodb",
        "moonshot",
        "morph",
        "nace",
        "nadir",
        "nano-gpt",
        "nebius",
        "neosantara",
        "nlp_cloud",
        "novita",
        "nscale",
        "nvidia_nim",
        "nvidia_riva",
        "oci",
        "ollama",
        "ollama_chat",
        "oobabooga",
        "openai",
        "openai_like",
        "opencode_go",
        "openinfer",
        "openrouter",
        "opensearch",
        "ovhcloud",
        "parallel_ai",
        "parasail",
        "perplexity",
        "petals",
        "pg_vector",
        "pinstripes",
        "poe",
        "predibase",
        "prism",
        "publicai",
        "qwen_ai_platform",
        "qwencloud",
        "ragflow",
        "recraft",
        "reducto",
        "refuseless",
        "reka",
        "replicate",
        "runwayml",
        "s3_vectors",
        "sagemaker",
        "sagemaker_chat",
        "sagemaker_nova",
        "sail",
        "sambanova",
        "sap",
        "scaledown",
        "scaleway",
        "scx-ai",
        "snowflake",
        "soniox",
        "stability",
        "strands_decider",
        "streamlake",
        "synthetic",
        "tencent",
        "tensormesh",
        "text-completion-codestral",
        "text-completion-inception",
        "text-completion-openai",
        "together_ai",
        "topaz",
        "transcribe",
        "triton",
        "typesafe",
        "v0",
        "valkey",
        "vercel_ai_gateway",
        "vertex_ai",
        "vertex_ai_beta",
        "vllm",
        "volcengine",
        "voyage",
        "wally",
        "wandb",
        "watsonx",
        "watsonx_text",
        "xai",
        "xiaomi_mimo",
        "xinference",
        "zai",
        "zerogpu",
    }
)


def model_key(model: str | None, provider: str | None = None) -> str | None:
    """A model name without its routes: its row's `provider`, then any PROVIDERS segment."""
    if model and provider and model.startswith(f"{provider}/") and len(model) > len(provider) + 1:
        model = model[len(provider) + 1 :]
    while model:
        head, separator, rest = model.partition("/")
        if not separator or not rest or head not in PROVIDERS:
            break
        model = rest
    return model


def model_keys(models: pa.Array, providers: pa.Array | None = None) -> pa.Array:
    """`model_key` of distinct names (with their rows' providers, if given): a few dozen."""
    given = providers.to_pylist() if providers is not None else [None] * len(models)
    keys = [
        model_key(name, provider) for name, provider in zip(models.to_pylist(), given, strict=True)
    ]
    return pa.array(keys, pa.large_string())
