"""Backend configuration shared by node parameters and CLIs, the registry, and the fixed backend."""
from __future__ import annotations

import argparse
import ast
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import magma_ros
from magma_ros.actions import load_profile
from magma_ros.policy import (
    BACKEND_NAMES,
    BACKEND_OPTIONS,
    BackendConfig,
    Policy,
    PolicyConfigError,
    Prediction,
    create_policy,
)
from magma_ros.policy.cli_options import add_backend_arguments, backend_config_from_args
from magma_ros.policy.config import BUILTIN_BACKENDS

PROFILE = load_profile("bridge_orig")
IMAGE = np.zeros((4, 5, 3), dtype=np.uint8)


PACKAGE = Path(magma_ros.__file__).resolve().parent


def package_trees() -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_option_is_a_config_field_with_the_same_default():
    config = BackendConfig()
    assert [f.name for f in fields(BackendConfig)] == [spec.name for spec in BACKEND_OPTIONS]
    for spec, field in zip(BACKEND_OPTIONS, fields(BackendConfig)):
        default = getattr(config, spec.name)
        assert default == (tuple(spec.default) if spec.type is list else spec.default), spec.name
        assert field.type == (tuple[float, ...] if spec.type is list else spec.type), spec.name


def test_no_class_declares_the_backend_options_again():
    """``BackendConfig``'s fields are generated from ``BACKEND_OPTIONS``: a class that declares the
    options as annotated fields by hand (a second copy to keep equal) fails here."""
    names = {spec.name for spec in BACKEND_OPTIONS}
    copies = []
    for path, tree in package_trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                declared = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)
                            and isinstance(s.target, ast.Name)} & names
                if len(declared) * 2 >= len(names):
                    copies.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {sorted(declared)}")
    assert not copies, copies


def test_backend_names_are_listed_once():
    """The built-in backends are the keys of ``BUILTIN_BACKENDS`` and nothing else: any other literal
    tuple, list, set or dict in the package naming two of them (a second list to keep equal) fails here."""
    listings = []
    for path, tree in package_trees().items():
        for node in ast.walk(tree):
            items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
            if isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Set)) and items is not None:
                named = {item.value for item in items if isinstance(item, ast.Constant) and item.value in BACKEND_NAMES}
                if len(named) >= 2:
                    listings.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert listings == [f"policy/config.py:{_line_of_builtin_backends()}"], listings
    assert BACKEND_NAMES == tuple(BUILTIN_BACKENDS) == ("magma", "openai", "fixed", "demo")
    backend = next(spec for spec in BACKEND_OPTIONS if spec.name == "backend")
    assert backend.description.startswith("policy backend: magma, openai, fixed, demo, or a custom factory")


def _line_of_builtin_backends() -> int:
    tree = ast.parse((PACKAGE / "policy" / "config.py").read_text(encoding="utf-8"))
    return next(node.value.lineno for node in tree.body if isinstance(node, ast.AnnAssign)
                and getattr(node.target, "id", "") == "BUILTIN_BACKENDS")


def test_every_builtin_backend_has_its_factory():
    for name, path in BUILTIN_BACKENDS.items():
        module, _, function = path.partition(":")
        assert callable(getattr(__import__(module, fromlist=[function]), function)), name


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
