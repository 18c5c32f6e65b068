"""Model providers. Each module imports its heavy dependency only when used; pick one by name
through ``longreward.judge.create_apis``. ``vllm_local`` (in-process vLLM) is optional."""
