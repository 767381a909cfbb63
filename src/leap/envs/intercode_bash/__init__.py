"""InterCode-Bash without Docker: real NL2Bash tasks, InterCode's reward, a bubblewrap sandbox."""

from leap.envs.intercode_bash.env import IntercodeBashEnv, make_intercode_bash

__all__ = ["IntercodeBashEnv", "make_intercode_bash"]
