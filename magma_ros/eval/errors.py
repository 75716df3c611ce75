"""Errors of the evaluation tools."""


class BagError(ValueError):
    """A bag that cannot be used as asked: missing, unreadable, truncated, or without the topics or
    types the command needs. The message names the bag, the topic and, where known, the time."""


class RosSetupError(ValueError):
    """ROS arguments or topic names that rclpy refuses (a user error, reported in one line)."""
