"""ALFWorld on the real ``alfworld`` package (text engine) and the real game files."""

from leap.envs.alfworld.env import AlfworldEnv, make_alfworld

__all__ = ["AlfworldEnv", "make_alfworld"]
