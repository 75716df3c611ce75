"""magma_node as its console script starts it: with ``managed:=true`` a managed (lifecycle) node.

    unconfigured --configure--> inactive --activate--> active --deactivate--> inactive --cleanup--> unconfigured

- ``configure`` reads the parameters, loads the robot profile and the policy (the backend warms
  up) and creates the node's topics and services; a failure answers FAILURE, logs the one-line
  reason and leaves the node unconfigured.
- ``activate`` is ``~/enable true``; ``deactivate`` is ``~/enable false`` (zero at once and for
  ``disabled_zero_s``, the held action dropped; a model call still in flight cannot move the robot:
  the safety supervisor refuses actions while disabled). While not active, ``~/enable true`` is
  refused.
- ``cleanup`` stops the inference thread (after a model call in flight: a policy is never closed
  while in use) and closes and drops the policy (GPU memory is freed); topics and services stay,
  so a new ``configure`` only reloads the profile and the policy.
- ``shutdown`` (from any state) commands zero and ends the process (``finished``), which publishes
  the final zero twist and exits 0 as on Ctrl-C.

With ``managed:=false`` (the default) this is exactly a ``MagmaNode``: no state machine, no
lifecycle services.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from rclpy.exceptions import InvalidParameterValueException, ParameterUninitializedException
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from std_srvs.srv import SetBool

from ..interface import NODE_NAME
from ..policy.base import Policy, PolicyError
from .node import MagmaNode
from .params import declare_parameters
from .settings import NodeSettings, build_settings

CLEANUP_WAIT_S = 30.0  # how long cleanup waits for a model call in flight before it fails


class LifecycleMagmaNode(LifecycleNodeMixin, MagmaNode):
    """See the module docstring. ``finished`` is set when a ``shutdown`` transition asks the
    process to end."""

    def __init__(self, policy: Policy | None = None, *, node_name: str = NODE_NAME,
                 clock: Callable[[], float] | None = None, **node_kwargs: Any) -> None:
        self.finished = threading.Event()
        self.managed = False
        Node.__init__(self, node_name, **node_kwargs)
        try:
            self._init_clock(clock)
            self._declared = declare_parameters(self)
            self.managed = bool(self._declared["managed"])
            if not self.managed:
                self._setup(build_settings(self._declared), policy)
                return
            self._given_policy = policy
            self._configured_once = False
            self._active = False
            LifecycleNodeMixin.__init__(self)
        except BaseException:
            if getattr(self, "_owns_policy", False) and getattr(self, "policy", None) is not None:
                self.policy.close()
            self.destroy_node()
            raise
        self.get_logger().info("managed node: unconfigured (ros2 lifecycle set <node> configure)")

    # --- transitions ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load the profile and the policy; FAILURE with the reason logged."""
        entities = self._entities()
        try:
            settings = build_settings(self._current_values() | {"enabled_on_start": False})
            if not self._configured_once:
                self._setup(settings, self._given_policy)
                self._configured_once = True
            else:
                self._reload(settings)
        except Exception as exc:  # noqa: BLE001 - rclpy would turn it into ERROR without a word
            self._undo_configure(entities)
            expected = isinstance(exc, (ValueError, InvalidParameterValueException, PolicyError))
            self.get_logger().error(f"configure failed: {exc}" if expected else
                                    f"configure failed: internal error: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        if self._declared["enabled_on_start"]:
            self.get_logger().warning("enabled_on_start is ignored by a managed node: activate it to move")
        self.get_logger().info("configured: inactive (ros2 lifecycle set <node> activate)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Allow motion (``~/enable true``)."""
        self._active = True
        self.supervisor.set_enabled(True)
        command = self._publish_command()
        self.get_logger().info(f"activated; state {command.state.value}: {command.reason}" if command else "activated")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop: zero at once and for disabled_zero_s, the held action dropped (``~/enable false``)."""
        self._active = False
        self.supervisor.set_enabled(False)
        self._publish_command()
        self.get_logger().info("deactivated: zero twist, held action dropped")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop inference (after a model call in flight) and close and drop the policy; FAILURE,
        with inference running again, if the model call does not end within CLEANUP_WAIT_S."""
        if not self.core.stop(timeout=CLEANUP_WAIT_S):
            self.get_logger().error(f"cleanup failed: a model call has been running for more than "
                                    f"{CLEANUP_WAIT_S:g} s; the policy stays loaded")
            self.core.start()
            return TransitionCallbackReturn.FAILURE
        policy, self.policy = self.policy, None
        self.core.set_policy(None)
        if self._owns_policy:
            try:
                policy.close()
            except Exception as exc:  # noqa: BLE001 - released regardless
                self.get_logger().warning(f"closing the backend failed: {type(exc).__name__}: {exc}")
        self.get_logger().info("cleaned up: policy released; unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Command zero now and ask the process to end (it publishes the final zero twist)."""
        self._active = False
        if self._configured_once:
            self.supervisor.set_enabled(False)
            self._publish_command()
        self.get_logger().info(f"shutdown from {state.label}: exiting")
        self.finished.set()
        return TransitionCallbackReturn.SUCCESS

    # --- configure and cleanup -----------------------------------------------------------------
    def _current_values(self) -> dict[str, Any]:
        """Every parameter's value now (lists as lists; an unset array keeps its default)."""
        values = {}
        for name, declared in self._declared.items():
            try:
                value = self.get_parameter(name).value
            except ParameterUninitializedException:  # an array declared by type only, never set
                value = None
            if isinstance(declared, list):
                value = list(value) if value is not None else declared
            values[name] = value
        return values

    def _reload(self, settings: NodeSettings) -> None:
        """A configure after a cleanup: the node's topics and services exist; reload the profile and
        the policy, apply the settings and restart inference."""
        with self._publish_lock:
            self.settings, self.profile = settings, settings.profile
            self.supervisor.configure(settings.limits, settings.timing)
        self.policy = self._given_policy if self._given_policy is not None else self._create_policy()
        self.core.set_policy(self.policy, self.profile)
        self.core.start()

    def _entities(self) -> dict[str, set]:
        return {"publisher": set(self.publishers), "subscription": set(self.subscriptions),
                "service": set(self.services), "timer": set(self.timers)}

    def _undo_configure(self, before: dict[str, set]) -> None:
        """Release what a failed first configure created (a retry creates it again)."""
        if not self._configured_once:
            if getattr(self, "_owns_policy", False) and getattr(self, "policy", None) is not None:
                self.policy.close()
            self.policy = None
        for kind, entities in self._entities().items():
            for entity in entities - before[kind]:
                getattr(self, f"destroy_{kind}")(entity)

    # --- overrides -----------------------------------------------------------------------------
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        """``~/enable``; enabling a managed node that is not active is refused."""
        if self.managed and request.data and not self._active:
            response.success = False
            response.message = "the managed node is not active: activate it first (ros2 lifecycle set <node> activate)"
            return response
        return super()._on_enable(request, response)

    def close(self) -> None:
        """Final zero twist and release (as ``MagmaNode.close``); a managed node that was never
        configured has commanded nothing and is only destroyed."""
        if self.managed and not self._configured_once:
            self.destroy_node()
            return
        if self.managed and self.policy is None:  # cleaned up: nothing left to release but the node
            self._owns_policy = False
        super().close()
