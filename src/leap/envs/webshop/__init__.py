"""WebShop on the 1000-product catalogue: pages, actions, reward, BM25 search and experts."""

from leap.envs.webshop.env import WebShopEnv, make_webshop

__all__ = ["WebShopEnv", "make_webshop"]
