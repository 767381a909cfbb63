"""WebShop goals: the synthetic goals of each product's option combinations, the human goals,
and a seeded, deterministic train / valid / test split.

Each product that has a synthetic instruction yields one goal per combination of its option
values (6,910 goals for the 1000-product catalogue). The price limit is drawn as WebShop does:
a price for each product (a range is sampled uniformly), then the larger of two of the next four
multiples of 10 above it, or no limit when fewer than two exist.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from leap.envs.webshop.products import HUMAN_GOALS_FILE, Product

PRICE_STEPS = [10.0 * i for i in range(1, 100)]
NO_LIMIT = 1_000_000.0
#: WebShop's seed for product prices, goal prices and the split
DEFAULT_SEED = 233
TEST_GOALS = 500
VALID_GOALS = 1000


@dataclass(frozen=True)
class Goal:
    asin: str
    instruction: str
    attributes: tuple[str, ...]
    #: option group -> value for synthetic goals; human goals name values only (group "")
    options: tuple[tuple[str, str], ...]
    price_upper: float
    name: str
    query: str
    category: str
    product_category: str
    weight: float = 1.0

    @property
    def option_values(self) -> list[str]:
        return [value for _, value in self.options]


def product_prices(products: list[Product], rng: random.Random) -> dict[str, float]:
    prices = {}
    for p in products:
        prices[p.asin] = p.pricing[0] if len(p.pricing) == 1 else rng.uniform(*p.pricing[:2])
    return prices


def _price_limit(price: float, rng: random.Random) -> tuple[float, str]:
    above = [step for step in PRICE_STEPS if step > price][:4]
    if len(above) < 2:
        return NO_LIMIT, ""
    _, upper = sorted(rng.sample(above, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def synthetic_goals(products: list[Product], seed: int = DEFAULT_SEED) -> list[Goal]:
    rng = random.Random(seed)
    prices = product_prices(products, rng)
    goals: list[Goal] = []
    for p in products:
        if not p.instruction or not p.instruction_attributes:
            continue
        upper, price_text = _price_limit(prices[p.asin], rng)
        names = sorted(p.options)
        for combination in itertools.product(*(p.options[n] for n in names)):
            chosen = tuple(zip(names, combination, strict=True))
            option_text = ", and ".join(f"{n}: {v}" for n, v in chosen)
            instruction = f"{p.instruction}{' with ' + option_text if option_text else ''}{price_text}"
            goals.append(_goal(p, instruction, p.instruction_attributes, chosen, upper))
    return _weighted(goals)


def human_goals(products: list[Product], data_dir: Path, seed: int = DEFAULT_SEED) -> list[Goal]:
    path = data_dir / HUMAN_GOALS_FILE
    if not path.is_file():
        return []
    rng = random.Random(seed)
    prices = product_prices(products, rng)
    by_asin = {p.asin: p for p in products}
    goals = []
    for asin, entries in json.loads(path.read_text()).items():
        p = by_asin.get(asin)
        if p is None:
            continue
        for entry in entries:
            attributes = tuple(entry.get("instruction_attributes") or ())
            if not attributes:
                continue
            upper, price_text = _price_limit(prices[asin], rng)
            options = tuple(("", str(v)) for v in entry.get("instruction_options") or ())
            instruction = str(entry["instruction"]).strip(".") + price_text
            goals.append(_goal(p, instruction, attributes, options, upper))
    return _weighted(goals)


def _goal(
    product: Product,
    instruction: str,
    attributes: tuple[str, ...],
    options: tuple[tuple[str, str], ...],
    price_upper: float,
) -> Goal:
    """A goal for ``product``: the product's own name, query and categories, the rest given."""
    return Goal(
        asin=product.asin,
        instruction=instruction,
        attributes=attributes,
        options=options,
        price_upper=price_upper,
        name=product.title,
        query=product.query,
        category=product.category,
        product_category=product.product_category,
    )


def _weighted(goals: list[Goal]) -> list[Goal]:
    """WebShop's goal weight: the mean inverse frequency of the goal's attributes."""
    counts: Counter[str] = Counter(a for g in goals for a in g.attributes)
    return [
        Goal(**{**g.__dict__, "weight": sum(1 / counts[a] for a in g.attributes) / len(g.attributes)})
        for g in goals
    ]


def split_goals(goals: list[Goal], seed: int = DEFAULT_SEED) -> dict[str, list[Goal]]:
    """Shuffle once with the seed: the first 500 are test, the next 1000 valid, the rest train."""
    order = list(goals)
    random.Random(seed).shuffle(order)
    return {
        "train": order[TEST_GOALS + VALID_GOALS :],
        "valid": order[TEST_GOALS : TEST_GOALS + VALID_GOALS],
        "test": order[:TEST_GOALS],
    }
