"""The privileged state of a WebShop goal: the attributes, options and price limit it wants (the
requirements, which a teacher at privilege 25 reads) and a product that meets all of them, with
the planner's remaining clicks to buy it from the current page."""

from __future__ import annotations

import re

from leap.envs.base import PrivilegedState, Secret
from leap.envs.webshop.experts import plan_from
from leap.envs.webshop.site import Page, Shop
from leap.envs.webshop.tasks import Goal


def _escaped_prefix(title: str) -> str:
    """The title's first six words: how a reason would quote the product."""
    return re.escape(" ".join(title.split()[:6]))


def shop_state(goal: Goal, shop: Shop, page: Page | None) -> PrivilegedState:
    """``page`` is where the shopper is now (None: leave the plan out)."""
    product = shop.products[goal.asin]
    options = ", ".join(f"{g}: {v}" if g else v for g, v in goal.options) or "none"
    limit = "none" if goal.price_upper >= 1e6 else f"{goal.price_upper:.2f} dollars"
    attributes = ", ".join(goal.attributes)
    summary = f"Attributes wanted: {attributes}\nOptions wanted: {options}\nPrice limit: {limit}"
    data = {
        "asin": goal.asin,
        "title": product.title,
        "attributes": list(goal.attributes),
        "options": [list(o) for o in goal.options],
        "price_upper": goal.price_upper,
        "plan": plan_from(page, goal, shop) if page is not None else None,
    }
    secrets = (
        Secret(goal.asin, goal.asin, "target asin"),
        Secret(_escaped_prefix(product.title), product.title, "target title"),
    )
    text = f"{summary}\nA product that satisfies all of them: {goal.asin} ({product.title})"
    return PrivilegedState(text, data, secrets, summary=summary)
