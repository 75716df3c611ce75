"""``magma-ros fleet`` configuration files: the serve section becomes the replicas' ``magma-ros serve``
options, parsed as serve parses them."""
from __future__ import annotations

from magma_ros.server.fleet_config import fleet_config_from_mapping
from magma_ros.server.startup import parse_serve_args


def test_serve_section_values_and_lists_become_serve_options(tmp_path):
    tokenizer = tmp_path / "tok.json"
    tokenizer.write_text("{}")
    serve = {"no_model": True, "tokenizer": str(tokenizer), "max-batch-size": 4,
             "fixed_action": [0.01, 0, 0, 0, 0, 0, 1],
             "action_prompt": ["pick {instruction}", "do {instruction}"], "trust_remote_code": False}
    config = fleet_config_from_mapping({"serve": serve}, "fleet.yaml", parse_serve_args)
    args = parse_serve_args(list(config.serve_argv))
    assert args.no_model and args.tokenizer == str(tokenizer) and args.max_batch_size == 4
    assert args.fixed_action == [0.01, 0, 0, 0, 0, 0, 1]
    assert args.action_prompt == ["pick {instruction}", "do {instruction}"]
    assert args.trust_remote_code is False
    assert config.deployment["max_ongoing_requests"] == args.queue_depth + 4
