"""``make demo-learn``: record expert demonstrations in the simulator, compute the statistics,
fine-tune a small Magma and evaluate it closed loop (``python -m magma_ros.demo_learn``)."""
