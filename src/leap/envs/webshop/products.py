"""The WebShop catalogue: raw product records normalised the way WebShop's engine does.

A product keeps its title, price (one value or a low-high range), option groups (lower-cased
names and values, ``/`` written as `` | ``), attributes (from the instruction file), category
path, description, bullet points and reviews. Records with a bad or repeated ASIN are skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leap.envs.base import EnvError
from leap.paths import find_data_dir

PRODUCTS_FILE = "items_shuffle_1000.json"
ATTRIBUTES_FILE = "items_ins_v2_1000.json"
HUMAN_GOALS_FILE = "items_human_ins_1000.json"
#: the price WebShop gives a product that lists none
DEFAULT_PRICE = 100.0


@dataclass(frozen=True)
class Product:
    asin: str
    title: str
    #: one price, or the low and high end of a range
    pricing: tuple[float, ...]
    #: option group -> values, both lower-cased
    options: dict[str, list[str]]
    attributes: tuple[str, ...]
    category: str
    query: str
    product_category: str
    description: str
    bullet_points: tuple[str, ...]
    reviews: tuple[dict[str, Any], ...] = ()
    rating: str = "N.A."
    #: the synthetic instruction written for this product, with the attributes it asks for
    instruction: str | None = None
    instruction_attributes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def price_tag(self) -> str:
        if len(self.pricing) == 1:
            return f"${self.pricing[0]}"
        return f"${self.pricing[0]} to ${self.pricing[1]}"


def parse_pricing(text: str | None) -> tuple[float, ...]:
    """``"$19.99$27.99"`` -> (19.99, 27.99); empty -> the default price."""
    prices = [p for p in (re.sub(r"[^\d.]", "", part) for part in (text or "").split("$")[1:]) if p]
    values = []
    for p in prices:
        try:
            values.append(float(p))
        except ValueError:
            continue
    return tuple(values[:2]) if values else (DEFAULT_PRICE,)


def parse_options(raw: Any) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        return options
    for name, contents in raw.items():
        if not contents:
            continue
        values = [str(c["value"]).strip().replace("/", " | ").lower() for c in contents if c.get("value")]
        if values:
            options[name.lower()] = values
    return options


def _bullets(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list):
        return tuple(str(b) for b in raw)
    return (str(raw),) if raw else ()


def webshop_data_dir(explicit: str | Path | None = None) -> Path:
    """The config's directory, else ``$LEAP_WEBSHOP_DATA``, else ``../shared/data/webshop``."""
    found = find_data_dir(explicit, "LEAP_WEBSHOP_DATA", "webshop")
    if found is None or not (found / PRODUCTS_FILE).is_file():
        where = str(found) if found else "$LEAP_WEBSHOP_DATA and ../shared/data/webshop"
        raise EnvError(
            f"webshop: no catalogue found (looked at {where}). Point env.options.data_dir or "
            f"$LEAP_WEBSHOP_DATA at a folder with {PRODUCTS_FILE} and {ATTRIBUTES_FILE}."
        )
    return found


def load_products(data_dir: Path) -> list[Product]:
    raw = json.loads((data_dir / PRODUCTS_FILE).read_text())
    attributes_path = data_dir / ATTRIBUTES_FILE
    attributes = json.loads(attributes_path.read_text()) if attributes_path.is_file() else {}
    products, seen = [], set()
    for record in raw:
        asin = str(record.get("asin", ""))
        if not asin or asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        extra = attributes.get(asin, {})
        products.append(
            Product(
                asin=asin,
                title=str(record.get("name", "")),
                pricing=parse_pricing(record.get("pricing")),
                options=parse_options(record.get("customization_options")),
                attributes=tuple(extra.get("attributes") or ("DUMMY_ATTR",)),
                category=str(record.get("category", "")),
                query=str(record.get("query", "")).lower().strip(),
                product_category=str(record.get("product_category", "")),
                description=str(record.get("full_description") or ""),
                bullet_points=_bullets(record.get("small_description")),
                rating=str(record.get("average_rating") or "N.A."),
                instruction=extra.get("instruction"),
                instruction_attributes=tuple(extra.get("instruction_attributes") or ()),
            )
        )
    return products
