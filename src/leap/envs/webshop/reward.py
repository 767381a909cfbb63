"""WebShop's purchase reward, with its four parts.

    reward = r_type * (attributes matched + options matched + [price <= limit])
                    / (#attributes + #options + 1)

A goal attribute matches when one of the product's attributes has a token-set ratio above 85
with it, or when it appears in the product's title, bullet points or description. A goal option
matches a chosen option with a token-set ratio above 85, after both are reduced to a base colour
name when they contain one. ``r_type`` is 1 when the bought product is of the goal's type (same
search query, two or more shared category levels, or more than 20 % of the goal title's nouns),
0.5 when it is not, 0.1 when fewer than 10 % of the nouns are shared and 0 when none are.

WebShop tags nouns with spaCy; no tagger model can be installed here without a download, so
``title_nouns`` is a deterministic heuristic: lower-cased alphabetic words of three letters or
more that are not stop words, colours, measure words or words with an adjective or adverb ending.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz

from leap.envs.webshop.products import Product
from leap.envs.webshop.tasks import Goal

MATCH_THRESHOLD = 85

#: base colour names; an option that contains one is compared by that name alone
# fmt: off
COLOURS = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black", "blue",
    "blush", "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel", "champagne",
    "charcoal", "cheetah", "chestnut", "chocolate", "christmas", "coffee", "cognac", "copper", "coral",
    "cranberry", "cream", "crystal", "dark", "denim", "eggplant", "elephant", "espresso", "fuchsia",
    "gold", "granite", "grape", "graphite", "grass", "gray", "green", "grey", "heather", "indigo",
    "ivory", "ivy", "khaki", "lavender", "lemon", "leopard", "light", "lilac", "lime", "magenta",
    "maroon", "mauve", "merlot", "midnight", "mint", "mocha", "multicolor", "mushroom", "mustard",
    "natural", "navy", "nude", "olive", "orange", "peach", "pewter", "pink", "plum", "purple",
    "rainbow", "red", "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver", "skull",
    "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise",
    "violet", "walnut", "wheat", "white", "wine", "yellow",
)

_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into", "is",
    "it", "its", "of", "on", "or", "our", "that", "the", "their", "this", "to", "with", "without",
    "your", "you", "all", "any", "each", "more", "most", "new", "other", "over", "per", "set", "pack",
    "pcs", "piece", "pieces", "inch", "inches", "count", "ounce", "ounces", "fl", "oz", "lb", "lbs",
    "mm", "cm", "ml", "size", "sizes", "style",
))
# fmt: on
_NOT_NOUN_ENDINGS = ("ful", "less", "ous", "ive", "able", "ible", "ish", "ly", "ed", "ing", "est")
_WORD = re.compile(r"[a-z]{3,}")


def normalize_colour(text: str) -> str:
    return next((c for c in COLOURS if c in text), text)


def title_nouns(title: str) -> set[str]:
    words = _WORD.findall(title.lower())
    return {w for w in words if w not in _STOP and w not in COLOURS and not w.endswith(_NOT_NOUN_ENDINGS)}


@dataclass(frozen=True)
class RewardParts:
    reward: float
    r_type: float
    #: share of the goal's attributes matched
    r_attribute: float
    #: share of the goal's options matched (None when the goal has none)
    r_option: float | None
    r_price: bool
    attributes_matched: int
    options_matched: int

    def to_info(self) -> dict[str, float | bool | None]:
        return dict(self.__dict__)


def type_factor(product: Product, goal: Goal) -> float:
    query_match = product.query == goal.query
    levels = {x.strip() for x in product.product_category.split("›")}
    goal_levels = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(levels & goal_levels) >= 2
    wanted = title_nouns(goal.name)
    title_score = len(title_nouns(product.title) & wanted) / len(wanted) if wanted else 0.2
    r_type = 1.0 if (query_match or category_match or title_score > 0.2) else 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type


def attributes_matched(product: Product, goal: Goal) -> int:
    text = " ".join([product.title, " ".join(product.bullet_points), product.description]).lower()
    matched = 0
    for wanted in goal.attributes:
        if (
            any(fuzz.token_set_ratio(have, wanted) > MATCH_THRESHOLD for have in product.attributes)
            or wanted in text
        ):
            matched += 1
    return matched


def options_matched(chosen: Iterable[str], goal: Goal) -> int:
    have = [normalize_colour(o) for o in chosen]
    matched = 0
    for wanted in (normalize_colour(o) for o in goal.option_values):
        if any(fuzz.token_set_ratio(h, wanted) > MATCH_THRESHOLD for h in have):
            matched += 1
    return matched


def purchase_reward(product: Product, goal: Goal, price: float, chosen: dict[str, str]) -> RewardParts:
    """The reward for buying ``product`` at ``price`` with the ``chosen`` options."""
    r_type = type_factor(product, goal)
    n_attr = attributes_matched(product, goal)
    n_opt = options_matched(chosen.values(), goal)
    r_price = price <= goal.price_upper
    total = (n_attr + n_opt + r_price) / (len(goal.attributes) + len(goal.options) + 1)
    return RewardParts(
        reward=total * r_type,
        r_type=r_type,
        r_attribute=n_attr / len(goal.attributes) if goal.attributes else 0.0,
        r_option=n_opt / len(goal.options) if goal.options else None,
        r_price=r_price,
        attributes_matched=n_attr,
        options_matched=n_opt,
    )
