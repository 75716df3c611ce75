"""Backend configuration shared by node parameters and CLIs, the registry, and the fixed backend."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from magma_ros.actions import load_profile
from magma_ros.policy import BACKEND_OPTIONS, BackendConfig, Policy, PolicyConfigError, Prediction, create_policy
from magma_ros.policy.cli_options import add_backend_arguments, backend_config_from_args

PROFILE = load_profile("bridge_orig")
IMAGE = np.zeros((4, 5, 3), dtype=np.uint8)


def test_every_option_is_a_config_field_with_the_same_default():
    config = BackendConfig()
    for spec in BACKEND_OPTIONS:
        default = getattr(config, spec.name)
        assert default == (tuple(spec.default) if spec.type is list else spec.default), spec.name


def test_cli_options_use_the_same_names():
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(["--backend", "fixed", "--fixed-action", "0.01,0,0,0,0,0.1,1",
                              "--request-timeout-s", "2.5", "--api-key-env", "MAGMA_TOKEN"])
    config = backend_config_from_args(args)
    assert config.backend == "fixed" and config.fixed_action == (0.01, 0, 0, 0, 0, 0.1, 1)
    assert config.request_timeout_s == 2.5 and config.api_key_env == "MAGMA_TOKEN"


@pytest.mark.parametrize("values, message", [
    ({"backend": "tensorflow"}, "backend: must be one of magma, openai, fixed, demo"),
    ({"temperature": -1.0}, "temperature: must be >= 0"),
    ({"request_timeout_s": 0.0}, "request_timeout_s: must be > 0"),
    ({"dtype": "int3"}, "dtype: must be one of"),
    ({"fixed_action": [0.0, float("nan")]}, "fixed_action: values must be finite"),
    ({"colour": "red"}, "unknown backend option(s): colour"),
])
def test_invalid_backend_options(values, message):
    with pytest.raises(PolicyConfigError) as err:
        BackendConfig.from_mapping(values)
    assert message in str(err.value)


def test_fixed_backend_returns_its_action_for_any_image():
    policy = create_policy(BackendConfig(backend="fixed", fixed_action=(0.01, 0, 0, 0, 0, 0, 1)), PROFILE)
    assert isinstance(policy, Policy)
    prediction = policy.predict(IMAGE, "anything")
    assert prediction.token_ids is None
    np.testing.assert_array_equal(prediction.action, [0.01, 0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        policy.predict(np.zeros((4, 5), dtype=np.uint8), "x")
    with pytest.raises(PolicyConfigError, match="fixed_action: expected 7 values"):
        create_policy(BackendConfig(backend="fixed"), PROFILE)


def custom_factory(config, profile):
    return create_policy(BackendConfig(backend="fixed", fixed_action=(0,) * 7), profile)


def not_a_policy(config, profile):
    return object()


def test_custom_factory_backends():
    assert isinstance(create_policy(BackendConfig(backend="test_policy_config:custom_factory"), PROFILE), Policy)
    with pytest.raises(PolicyConfigError, match="returned object, not a Policy"):
        create_policy(BackendConfig(backend="test_policy_config:not_a_policy"), PROFILE)
    with pytest.raises(PolicyConfigError, match="has no function 'missing'"):
        create_policy(BackendConfig(backend="test_policy_config:missing"), PROFILE)
    with pytest.raises(PolicyConfigError, match="cannot import 'no_such_module'"):
        create_policy(BackendConfig(backend="no_such_module:f"), PROFILE)


def test_prediction_holds_exactly_one_kind():
    with pytest.raises(ValueError, match="exactly one"):
        Prediction()
    with pytest.raises(ValueError, match="7 integers"):
        Prediction(token_ids=np.arange(6))
    with pytest.raises(ValueError, match="7-vector"):
        Prediction(action=np.zeros(8))
    assert Prediction(token_ids=[127999] * 7).token_ids.dtype == np.int64
