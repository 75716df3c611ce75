"""``python -m magma_ros.demo_learn``."""
from .pipeline import main

raise SystemExit(main())
