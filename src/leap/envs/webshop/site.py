"""The shop's pages as a state machine: what each page shows, which names can be clicked, and
where a click or a search leads. Pages: search, results (10 a page, 50 results at most), item,
item sub-pages (description, features, reviews) and done.

Two observation modes: ``simple`` joins the page's elements with `` [SEP] `` (WebShop's text
mode); ``rich`` puts one element on a line, buttons in brackets and a chosen option as
``[x value]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from leap.envs.webshop.products import Product, load_products
from leap.envs.webshop.search import ProductSearch
from leap.envs.webshop.tasks import (
    DEFAULT_SEED,
    Goal,
    human_goals,
    product_prices,
    split_goals,
    synthetic_goals,
)

PAGE_SIZE = 10
BACK = "back to search"
NEXT = "next >"
PREV = "< prev"
BUY = "buy now"
SUB_PAGES = ("description", "features", "reviews")
OBSERVATION_MODES = ("simple", "rich")


@dataclass
class Shop:
    """Everything read-only: the catalogue, the search index, the goals by split."""

    products: dict[str, Product]
    prices: dict[str, float]
    search: ProductSearch
    goals: dict[str, list[Goal]]


@lru_cache(maxsize=4)
def open_shop(data_dir: Path, seed: int = DEFAULT_SEED) -> Shop:
    products = load_products(data_dir)
    goals = split_goals(synthetic_goals(products, seed), seed)
    goals["human"] = human_goals(products, data_dir, seed)
    prices = product_prices(products, random.Random(seed))
    return Shop({p.asin: p for p in products}, prices, ProductSearch(products), goals)


@dataclass
class Page:
    """Where the shopper is. ``kind`` is search, results, item, description, features, reviews
    or done."""

    kind: str = "search"
    query: str = ""
    results: list[str] = field(default_factory=list)
    page: int = 1
    asin: str | None = None
    chosen: dict[str, str] = field(default_factory=dict)

    @property
    def shows_search_bar(self) -> bool:
        return self.kind == "search"

    def visible_results(self) -> list[str]:
        start = (self.page - 1) * PAGE_SIZE
        return self.results[start : start + PAGE_SIZE]

    def has_next(self) -> bool:
        return self.page * PAGE_SIZE < len(self.results)


def clickables(page: Page, shop: Shop) -> list[str]:
    """The lower-cased names a click may name on this page, in page order."""
    if page.kind == "results":
        names = [BACK]
        if page.page > 1:
            names.append(PREV)
        if page.has_next():
            names.append(NEXT)
        return names + [a.lower() for a in page.visible_results()]
    if page.kind == "item":
        assert page.asin is not None
        product = shop.products[page.asin]
        values = [v for vs in product.options.values() for v in vs]
        return [BACK, PREV, *dict.fromkeys(values), *SUB_PAGES, BUY]
    if page.kind in SUB_PAGES:
        return [BACK, PREV]
    return []


@dataclass(frozen=True)
class Element:
    text: str
    button: bool = False
    chosen: bool = False


def elements(page: Page, shop: Shop, instruction: str, score: float | None = None) -> list[Element]:
    """The page's content in reading order."""
    if page.kind == "search":
        return [Element("WebShop"), Element("Instruction:"), Element(instruction), Element("Search", True)]
    if page.kind == "done":
        return [
            Element("Thank you for shopping with us!"),
            Element("Your score (min 0.0, max 1.0)"),
            Element(f"{score if score is not None else 0.0:.2f}"),
        ]
    out = [Element("Back to Search", True)]
    if page.kind == "results":
        if page.page > 1:
            out.append(Element("< Prev", True))
        out.append(Element(f"Page {page.page} (Total results: {len(page.results)})"))
        if page.has_next():
            out.append(Element("Next >", True))
        for asin in page.visible_results():
            product = shop.products[asin]
            out += [Element(asin, True), Element(product.title), Element(product.price_tag)]
        return out
    out.append(Element("< Prev", True))
    assert page.asin is not None
    product = shop.products[page.asin]
    if page.kind == "item":
        for group, values in product.options.items():
            out.append(Element(group))
            out += [Element(v, True, page.chosen.get(group) == v) for v in values]
        out += [
            Element(product.title),
            Element(f"Price: {product.price_tag}"),
            Element(f"Rating: {product.rating}"),
            *(Element(name.capitalize(), True) for name in SUB_PAGES),
            Element("Buy Now", True),
        ]
    elif page.kind == "description":
        out.append(Element(product.description or "(no description)"))
    elif page.kind == "features":
        out += [Element(b) for b in product.bullet_points] or [Element("(no features)")]
    else:
        out += [Element(str(r.get("text", r))) for r in product.reviews] or [Element("(no reviews)")]
    return out


def render(items: list[Element], mode: str) -> str:
    if mode == "simple":
        return " [SEP] ".join(e.text for e in items)
    lines = []
    for e in items:
        lines.append(f"[x {e.text}]" if e.chosen else f"[{e.text}]" if e.button else e.text)
    return "\n".join(lines)


def group_of(product: Product, value: str) -> str | None:
    return next((g for g, values in product.options.items() if value in values), None)


def transition(page: Page, action: str, shop: Shop) -> Page | None:
    """The page after ``action`` (``search[...]`` or ``click[...]``), or None if it is invalid
    here. Buying leads to the done page; the caller scores the purchase."""
    verb, _, rest = action.strip().partition("[")
    if not rest.endswith("]"):
        return None
    arg, verb = rest[:-1].strip(), verb.strip().lower()
    if verb == "search":
        if not page.shows_search_bar or not arg:
            return None
        return Page("results", arg, shop.search.search(arg))
    name = arg.lower()
    if verb != "click" or name not in clickables(page, shop):
        return None
    if name == BACK:
        return Page()
    if page.kind == "results":
        if name in (NEXT, PREV):
            return Page("results", page.query, page.results, page.page + (1 if name == NEXT else -1))
        asin = next(a for a in page.visible_results() if a.lower() == name)
        return Page("item", page.query, page.results, page.page, asin)
    if page.kind == "item":
        assert page.asin is not None
        if name == PREV:
            return Page("results", page.query, page.results, page.page)
        if name == BUY:
            return Page("done", page.query, page.results, page.page, page.asin, dict(page.chosen))
        if name in SUB_PAGES:
            return Page(name, page.query, page.results, page.page, page.asin, dict(page.chosen))
        group = group_of(shop.products[page.asin], name)
        assert group is not None
        return Page("item", page.query, page.results, page.page, page.asin, {**page.chosen, group: name})
    # a sub-page: < prev goes back to the item, options kept
    return Page("item", page.query, page.results, page.page, page.asin, dict(page.chosen))
