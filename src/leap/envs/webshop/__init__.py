"""WebShop on the 1000-product catalogue: products, goals, reward and search (the environment and
its experts are built on these)."""
