"""What ``magma-ros serve`` says at start-up is what it does (issue 26): it printed "batches of up
to 8" with --no-model, where nothing is batched and /health reports max_batch_size 1. The line
with a model is checked against /health in test_serve_node.py."""
from __future__ import annotations

import httpx
import pytest
from serve_support import CliServer

from magma_ros.server.settings import ServerSettings
from magma_ros.server.startup import startup_summary


def startup_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("magma-ros serve: ")]
    assert len(lines) == 1, output
    return lines[0]


def test_no_model_says_it_batches_nothing(console_script, llama3_tokenizer_path, tmp_path):
    server = CliServer(console_script("magma-ros"), ["--no-model", "--tokenizer", str(llama3_tokenizer_path)],
                       tmp_path / "serve.log")
    try:
        server.wait_healthy(60)
        health = httpx.get(server.url + "/health", timeout=10).json()
        line = startup_line(server.output())
    finally:
        assert server.stop() == 0, server.output()
    assert health["model_loaded"] is False and health["max_batch_size"] == 1
    assert line == (f"magma-ros serve: no model on {server.url} (auth off; /v1/action-tokens, /v1/models and "
                    "/health only)")


@pytest.mark.parametrize("max_batch_size, says", [
    (8, "action requests in batches of up to 8"),
    (2, "action requests in batches of up to 2"),
    (1, "one request at a time, no batching"),
])
def test_with_a_model_the_line_gives_the_batch_size(max_batch_size, says):
    settings = ServerSettings(served_model_name="tiny", max_batch_size=max_batch_size, auth_token="x")
    assert startup_summary(settings, model_loaded=True) == \
        f"magma-ros serve: tiny on http://{settings.host}:{settings.port} (auth on; {says})"
    assert "batch" not in startup_summary(settings, model_loaded=False)
