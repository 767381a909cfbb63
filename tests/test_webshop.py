"""WebShop: catalogue, goals and splits, the reward formula by parts, BM25 search."""

from __future__ import annotations

import dataclasses
from collections import Counter
from functools import cache

import pytest

from leap.envs.base import EnvError
from leap.envs.webshop.goals import Goal, human_goals, split_goals, synthetic_goals
from leap.envs.webshop.products import Product, load_products, parse_options, parse_pricing, webshop_data_dir
from leap.envs.webshop.reward import normalize_colour, purchase_reward, title_nouns
from leap.envs.webshop.search import ProductSearch


@cache
def _products() -> tuple[Product, ...]:
    return tuple(load_products(webshop_data_dir()))


def test_catalogue_is_normalised() -> None:
    products = _products()
    assert len(products) == 1000 and len({p.asin for p in products}) == 1000
    assert parse_pricing("$19.99$27.99") == (19.99, 27.99) and parse_pricing("") == (100.0,)
    assert parse_options({"Color": None, "Size": [{"value": " Small/Medium "}]}) == {
        "size": ["small | medium"]
    }
    with_options = [p for p in products if p.options]
    assert with_options and all(v == v.lower() for p in with_options for vs in p.options.values() for v in vs)


def test_missing_catalogue_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EnvError, match="no catalogue found"):
        webshop_data_dir(tmp_path / "nowhere")


def test_goals_and_splits_are_deterministic() -> None:
    goals = synthetic_goals(list(_products()))
    assert len(goals) == 6910
    assert goals == synthetic_goals(list(_products()))
    splits = split_goals(goals)
    assert {k: len(v) for k, v in splits.items()} == {"train": 5410, "valid": 1000, "test": 500}
    assert split_goals(goals) == splits and split_goals(goals, seed=1)["test"] != splits["test"]
    assert Counter(g for v in splits.values() for g in v) == Counter(goals)  # a partition
    assert all(g.price_upper > 0 and g.instruction for g in goals)
    assert len(human_goals(list(_products()), webshop_data_dir())) == 13


def _product(**changes: object) -> Product:
    base = Product(
        asin="B000000001",
        title="Organic Green Tea Bags, Decaf",
        pricing=(12.0,),
        options={"flavor": ["mint", "lemon"], "size": ["20 count", "40 count"]},
        attributes=("gluten free", "organic"),
        category="grocery",
        query="green tea",
        product_category="Grocery › Beverages › Tea › Green Tea",
        description="Whole leaf tea, caffeine free.",
        bullet_points=("Non GMO",),
    )
    return dataclasses.replace(base, **changes)


GOAL = Goal(
    asin="B000000001",
    instruction="i want gluten free organic green tea that is non gmo with flavor: mint",
    attributes=("gluten free", "organic", "non gmo"),
    options=(("flavor", "mint"),),
    price_upper=20.0,
    name="Organic Green Tea Bags, Decaf",
    query="green tea",
    category="grocery",
    product_category="Grocery › Beverages › Tea › Green Tea",
)


def test_reward_full_match_and_each_missing_part() -> None:
    product = _product()
    full = purchase_reward(product, GOAL, 12.0, {"flavor": "mint"})
    assert full.reward == 1.0 and full.r_type == 1.0 and full.r_option == 1.0 and full.r_price
    assert full.attributes_matched == 3  # "non gmo" from the bullet points, not the attribute list
    wrong_option = purchase_reward(product, GOAL, 12.0, {"flavor": "lemon"})
    assert wrong_option.reward == pytest.approx(4 / 5) and wrong_option.r_option == 0.0
    no_option = purchase_reward(product, GOAL, 12.0, {})
    assert no_option.reward == pytest.approx(4 / 5)
    over_price = purchase_reward(product, GOAL, 25.0, {"flavor": "mint"})
    assert over_price.reward == pytest.approx(4 / 5) and not over_price.r_price
    fewer = purchase_reward(
        _product(attributes=("organic",), bullet_points=()), GOAL, 12.0, {"flavor": "mint"}
    )
    assert fewer.attributes_matched == 1 and fewer.reward == pytest.approx(3 / 5)  # only "organic"


def test_reward_type_factor() -> None:
    other = _product(
        title="Stainless Steel Kettle",
        query="kettles",
        product_category="Home & Kitchen › Kitchen › Kettles",
    )
    assert purchase_reward(other, GOAL, 12.0, {"flavor": "mint"}).r_type == 0.0
    # shares a noun with the goal's title but neither the query nor two category levels
    cousin = _product(title="Tea Infuser Basket", query="infusers", product_category="Kitchen › Tools")
    parts = purchase_reward(cousin, GOAL, 12.0, {"flavor": "mint"})
    assert parts.r_type == 1.0  # "tea" is 1 of the goal title's 4 nouns: more than 20 %
    few = _product(title="Bags", query="x", product_category="A › B")
    goal = dataclasses.replace(
        GOAL, name="Organic Green Tea Loose Leaf Blend Bags Tin Gift Box Sampler Set Kit"
    )
    assert purchase_reward(few, goal, 12.0, {}).r_type == 0.1  # 1 of more than 10 nouns
    assert title_nouns("Organic Green Tea Bags, Decaf") == {"organic", "tea", "bags", "decaf"}


def test_colour_normalisation_matches_shades() -> None:
    assert normalize_colour("navy blue") == "blue" and normalize_colour("3 pack") == "3 pack"
    goal = dataclasses.replace(GOAL, options=(("color", "dark blue"),))
    assert purchase_reward(_product(), goal, 12.0, {"color": "royal blue"}).options_matched == 1


def test_search_finds_each_product_by_its_title() -> None:
    products = _products()
    search = ProductSearch(list(products))
    top = sum(search.search(p.title)[:1] == [p.asin] for p in products)
    assert top >= 0.99 * len(products)
    assert len(search.search("tea")) <= 50 and search.search("the of and") == []
