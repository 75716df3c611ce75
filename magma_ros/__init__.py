"""magma_ros: vision-language-action control for robot arms with Microsoft Magma.

The core (``actions``, ``safety``, ``policy``) imports neither rclpy nor torch.
"""

__version__ = "0.1.0"
