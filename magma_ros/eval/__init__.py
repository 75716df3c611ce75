"""Rosbag evaluation: offline metrics on recorded bags (``magma-ros eval``), live replay through
magma_node (``magma-ros replay``) and a small recorder (``magma-ros record``).

The offline parts read and write rosbag2 (MCAP and sqlite3) with the ``rosbags`` library and need
no ROS installation; only ``replay`` and ``record`` import rclpy.
"""
