"""``make demo``: decode the hosted Magma endpoint's published example for both built-in robots."""
from __future__ import annotations

import json

from .actions import ActionDecoder, action_to_dict, load_profile

# Llama-3 token ids of the published example text "立刻ẳn сирiв衝ційнаiв".
EXAMPLE_IDS = [127843, 127876, 127917, 127872, 127852, 127874, 127872]


def main() -> int:
    """Print the decoded 7-DoF delta per robot."""
    for robot in ("bridge_orig", "google_robot"):
        profile = load_profile(robot)
        action = ActionDecoder(profile.stats).decode_ids(EXAMPLE_IDS)
        print(f"{robot:13s} {json.dumps(action_to_dict(action))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
