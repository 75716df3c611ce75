"""Gripper conventions, rotation conventions and delta -> twist conversion."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magma_ros.actions import GripperConfig, GripperConverter, delta_to_twist, euler_xyz_to_rotvec
from magma_ros.actions.errors import ActionContractError
from magma_ros.actions.rotation import euler_xyz_to_matrix, rotvec_to_matrix


def test_single_axis_rotations_are_their_own_rotvec():
    np.testing.assert_allclose(euler_xyz_to_rotvec([0.2, 0, 0]), [0.2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(euler_xyz_to_rotvec([0, -0.3, 0]), [0, -0.3, 0], atol=1e-12)
    np.testing.assert_allclose(euler_xyz_to_rotvec([0, 0, 1.0]), [0, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose(euler_xyz_to_rotvec([0, 0, 0]), [0, 0, 0], atol=0)


def test_extrinsic_xyz_order():
    # Extrinsic x then z: R = Rz(yaw) @ Rx(roll).
    r = euler_xyz_to_matrix([np.pi / 2, 0, np.pi / 2])
    rx = euler_xyz_to_matrix([np.pi / 2, 0, 0])
    rz = euler_xyz_to_matrix([0, 0, np.pi / 2])
    np.testing.assert_allclose(r, rz @ rx, atol=1e-12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3))
def test_rotvec_reproduces_the_rotation(rpy):
    rotvec = euler_xyz_to_rotvec(rpy)
    assert np.linalg.norm(rotvec) <= np.pi + 1e-9
    np.testing.assert_allclose(rotvec_to_matrix(rotvec), euler_xyz_to_matrix(rpy), atol=1e-6)


def test_rotvec_near_pi():
    rotvec = euler_xyz_to_rotvec([np.pi, 0, 0])
    np.testing.assert_allclose(np.abs(rotvec), [np.pi, 0, 0], atol=1e-6)


def test_delta_to_twist_divides_by_the_period():
    twist = delta_to_twist([0.01, -0.02, 0.03, 0.0, 0.0, 0.1, 1.0], dt=0.2)
    np.testing.assert_allclose(twist.linear, [0.05, -0.1, 0.15])
    np.testing.assert_allclose(twist.angular, [0, 0, 0.5])
    with pytest.raises(ActionContractError, match="control period must be positive"):
        delta_to_twist([0] * 7, 0.0)
    with pytest.raises(ActionContractError, match="expected a 7-vector, got 6"):
        delta_to_twist([0] * 6, 0.2)


def test_binary_gripper():
    g = GripperConverter(GripperConfig(mode="binary", threshold=0.5))
    assert [g(v) for v in (0.9, 0.5, 0.51, 0.0)] == [1.0, 0.0, 1.0, 0.0]


def test_continuous_gripper_rescales_and_clips():
    g = GripperConverter(GripperConfig(mode="continuous", open_value=0.08, closed_value=0.0))
    assert [g(v) for v in (0.04, 0.2, -1.0)] == [0.5, 1.0, 0.0]


def test_relative_gripper_with_sticky_repeats():
    g = GripperConverter(GripperConfig(mode="relative", threshold=0.5, sticky_repeats=3, initial=1.0))
    # absolute opening 1 (open) then 0: change +1 -> close, held 3 steps even if the model wavers
    out = [g(v) for v in (1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0)]
    assert out == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    g.reset()
    assert g(0.0) == 1.0 and g(1.0) == 1.0  # first step has no change; then -1 opens


def test_relative_gripper_without_sticky():
    g = GripperConverter(GripperConfig(mode="relative", threshold=0.5, sticky_repeats=0))
    assert [g(v) for v in (1.0, 0.0, 0.0, 1.0)] == [1.0, 0.0, 0.0, 1.0]


def test_gripper_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        GripperConverter(GripperConfig())(float("nan"))
