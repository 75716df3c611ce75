"""The rclpy layer: the magma_node node, its diagnostics, inference thread and parameter declarations
(topic names, types and QoS come from ``magma_ros.interface``)."""
