"""WebShop on the 1000-product catalogue: pages, actions, reward, BM25 search and experts.

Modules: ``tasks`` (goals and their splits), ``env`` (the environment, over ``products``,
``site``, ``search`` and ``reward``), ``privileged`` (the privileged state), ``experts`` (planner,
searcher) and ``teacher`` (the programmatic teacher).
"""

from leap.envs.webshop.env import WebShopEnv

__all__ = ["WebShopEnv"]
