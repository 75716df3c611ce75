"""Closed-loop simulation: a PyBullet Panda (``world``), reaching tasks, a scripted expert, the
in-process evaluation loop, the ``magma_sim`` ROS node and the ``make demo`` runner.
PyBullet and rclpy are imported only by the modules that need them."""
