"""``magma-ros serve``: the model behind an OpenAI-compatible HTTP API with ``/v1/action-tokens``.

Needs the ``serve`` extra (fastapi, uvicorn, pillow); the model itself the ``magma`` extra.
"""
