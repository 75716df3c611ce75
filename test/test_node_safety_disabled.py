"""magma_node (fixed backend, as a process): disabled, it publishes zero for disabled_zero_s and
then nothing, so that another source (teleop) can share the servo's input; an e-stop keeps
commanding zero even while disabled. A new instruction drops the held action at once."""
from __future__ import annotations

import time

import pytest
from node_support import Probe, is_zero, rgb_image, running_node, topic_params, topics_under, wait_until
from safety_support import MOVE, stamp_s

TOPICS = topics_under("sc_dis")
ZERO_S = 0.5


@pytest.fixture
def node(console_script, tmp_path):
    params = {"backend": "fixed", "fixed_action": MOVE, "enabled_on_start": True, "instruction": "first task",
              "disabled_zero_s": ZERO_S, "control_rate_hz": 0.02,  # each action held 50 s
              "image_timeout_s": 60.0, "action_timeout_s": 600.0, "max_linear_accel": 100.0,
              "max_angular_accel": 100.0, **topic_params(TOPICS)}
    with running_node(console_script, "quiet_node", params, tmp_path, TOPICS) as running:
        yield running


def diagnostics_after(probe: Probe, n: int, **expected: str) -> list[dict[str, str]]:
    """Wait for ``n`` more /diagnostics reports (1 Hz) matching ``expected``; return them."""
    start = len(probe.diagnostics.items)

    def matching():
        found = [v for _, (_, v) in list(probe.diagnostics.items)[start:]
                 if all(v.get(k) == want for k, want in expected.items())]
        return found if len(found) >= n else None
    return wait_until(matching, 30, what=f"{n} diagnostics with {expected} (last: {probe.state()})")


def test_disabled_goes_quiet_after_its_stop_and_estop_still_commands_zero(node):
    proc, probe = node
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
    assert probe.enable(False).success
    disabled_at = time.time()
    quiet = diagnostics_after(probe, 2, state="disabled", publishing="false")
    assert quiet[0]["commands_published"] == quiet[1]["commands_published"], "published while quiet"
    after = [m for _, m in list(probe.twists.items) if stamp_s(m) >= disabled_at]
    assert after and all(is_zero(m) for m in after), "the stop is published, as zero twists"
    # decided within disabled_zero_s of the disable (the node's own clock); 0.1 s of slack for stamping
    assert max(stamp_s(m) for m in after) < disabled_at + ZERO_S + 0.1
    # an e-stop is always commanded, also while disabled
    probe.estop(True)
    loud = diagnostics_after(probe, 2, state="estop", publishing="true")
    assert int(loud[1]["commands_published"]) > int(loud[0]["commands_published"])
    assert all(is_zero(m) for _, m in list(probe.twists.items) if stamp_s(m) >= disabled_at)
    probe.estop(False)
    assert probe.reset().success
    diagnostics_after(probe, 2, state="disabled", publishing="false")
    # enabled again, it moves at the next action: due one control period after the last, so the
    # period is shortened first (at 0.02 Hz it would be up to 50 s away)
    assert probe.set_params(control_rate_hz=5.0)[0].successful
    assert probe.enable(True).success
    with probe.stream(rgb_image()):
        probe.wait_motion(60)


def test_new_instruction_drops_the_held_action_at_once(node):
    proc, probe = node
    with probe.stream(rgb_image()):
        probe.wait_motion(60)
        actions = len(probe.actions.items)
        probe.instruct("second task")
        sent = time.monotonic()
        # the action is held 50 s: a zero well before that can only come from the instruction change
        wait_until(lambda: any(is_zero(m) for _, m in probe.twists.since(sent)), 30,
                   what="a zero twist after the instruction change")
        first_zero = next(t for t, m in probe.twists.since(sent) if is_zero(m))
        diagnostics_after(probe, 2, instruction="second task")
        # zero until the first action for the new instruction (the next one is due 50 s after the last)
        if len(probe.actions.items) == actions:
            assert all(is_zero(m) for _, m in probe.twists.since(first_zero))
