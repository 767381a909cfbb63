"""InterCode-Bash without Docker: real NL2Bash tasks, InterCode's reward, a bubblewrap sandbox.

Modules: ``tasks`` (the tasks and their splits), ``env`` (the environment, over ``sandbox`` and
``reward``), ``privileged`` (the privileged state), ``experts`` (gold) and ``teacher`` (the
programmatic teacher).
"""

from leap.envs.intercode_bash.env import IntercodeBashEnv

__all__ = ["IntercodeBashEnv"]
