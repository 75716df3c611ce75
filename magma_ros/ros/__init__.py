"""The rclpy layer: the magma_node node, message conversions, QoS and parameter declarations."""
