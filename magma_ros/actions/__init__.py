"""The action contract: token ids <-> bins <-> normalized <-> robot units. Pure numpy."""
from .decoder import ActionDecoder, action_to_dict, text_ids_to_action_ids
from .errors import ActionContractError, ActionTokenError, ProfileError, StatsError, TokenizerError
from .gripper import GripperConfig, GripperConverter
from .profiles import RobotProfile, builtin_profile_names, builtin_profiles, load_profile
from .rotation import euler_xyz_to_rotvec, rotvec_to_euler_xyz
from .sequence import extract_action_ids
from .stats import NormalizationStats
from .text import TextTokenizer
from .tokenizer import ACTION_DIM, AXIS_NAMES, LLAMA3_BASE_VOCAB, ActionTokenizer
from .twist import Twist, delta_to_twist

__all__ = [
    "ACTION_DIM", "AXIS_NAMES", "LLAMA3_BASE_VOCAB", "ActionContractError", "ActionDecoder",
    "ActionTokenError", "ActionTokenizer", "GripperConfig", "GripperConverter", "NormalizationStats",
    "ProfileError", "RobotProfile", "StatsError", "TextTokenizer", "TokenizerError", "Twist",
    "action_to_dict", "builtin_profile_names", "builtin_profiles", "delta_to_twist", "euler_xyz_to_rotvec",
    "extract_action_ids", "load_profile", "rotvec_to_euler_xyz", "text_ids_to_action_ids",
]
