"""ALFWorld on the real ``alfworld`` package (text engine) and the real game files.

Modules: ``tasks`` (the game files and their splits), ``env`` (the environment, its games run in
worker processes: ``workers``, ``serve``, ``engine``), ``privileged`` (the privileged state),
``experts`` (planner, handcoded, searcher) and ``teacher`` (the programmatic teacher); what it
shares with household is in ``leap.envs.alfred``.
"""

from leap.envs.alfworld.env import AlfworldEnv

__all__ = ["AlfworldEnv"]
