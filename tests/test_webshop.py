"""WebShop: catalogue, goals and splits, the reward formula by parts, BM25 search."""

from __future__ import annotations

import dataclasses
from collections import Counter
from functools import cache

import pytest
from shared_data import needs_data

from leap.envs.base import EnvError, UnknownTaskError
from leap.envs.webshop.env import WebShopEnv
from leap.envs.webshop.experts import PlannerPolicy, SearcherPolicy, instruction_query
from leap.envs.webshop.products import Product, load_products, parse_options, parse_pricing, webshop_data_dir
from leap.envs.webshop.reward import normalize_colour, purchase_reward, title_nouns
from leap.envs.webshop.search import ProductSearch
from leap.envs.webshop.tasks import Goal, human_goals, split_goals, synthetic_goals
from leap.envs.webshop.teacher import ShopTeacherPolicy
from leap.rollout import run_episodes

#: tests that read the catalogue
catalogue = needs_data("webshop")


@cache
def _products() -> tuple[Product, ...]:
    return tuple(load_products(webshop_data_dir()))


@catalogue
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


@catalogue
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


@catalogue
def test_search_finds_each_product_by_its_title() -> None:
    products = _products()
    search = ProductSearch(list(products))
    top = sum(search.search(p.title)[:1] == [p.asin] for p in products)
    assert top >= 0.99 * len(products)
    assert len(search.search("tea")) <= 50 and search.search("the of and") == []


# -- the environment ----------------------------------------------------------------------------
@cache
def _env() -> WebShopEnv:
    return WebShopEnv()


def _target_first_page() -> tuple[WebShopEnv, str]:
    env = _env()
    task = "test/0000"
    env.reset(task)
    return env, task


@catalogue
def test_pages_and_action_rules() -> None:
    env, task = _target_first_page()
    goal = env.goal(task)
    space = env.action_space()
    assert space.choices == () and space.free_form is not None
    assert space.free_form.accepts("search[red shoes]") and not space.free_form.accepts("search[]")
    assert env.step("search[ ]").info["invalid"]  # an empty query changes nothing
    results = env.step(f"search[{instruction_query(env.task)}]")
    assert results.info["page"] == "results" and "Page 1 (Total results: " in results.observation
    assert (
        results.observation.startswith("Back to Search [SEP] ")
        and " [SEP] Next > [SEP] " in results.observation
    )
    space = env.action_space()
    assert space.free_form is None  # no search bar here: search[...] is invalid
    assert "click[back to search]" in space.choices and "click[next >]" in space.choices
    assert env.step("search[shoes]").info["invalid"]
    asins = [c[6:-1] for c in space.choices if c.startswith("click[b0")]
    assert len(asins) == 10 and all(a == a.lower() for a in asins)
    env.step("click[next >]")
    assert "Page 2 (Total results: " in env.step("click[nonsense]").observation
    assert "click[< prev]" in env.action_space().choices
    env.step("click[< prev]")
    item = env.step(f"CLICK[{asins[0].upper()}]")  # names match without case
    assert item.info["page"] == "item"
    product = env.shop.products[asins[0].upper()]
    assert f"Price: {product.price_tag}" in item.observation and item.observation.endswith("Buy Now")
    for sub in ("description", "features", "reviews"):
        assert env.step(f"click[{sub}]").info["page"] == sub
        assert env.step("click[< prev]").info["page"] == "item"
    assert env.step("click[back to search]").info["page"] == "search"
    assert goal.instruction in env.step("click[buy now]").observation  # invalid here: still the search page


@catalogue
def test_options_are_marked_in_rich_mode_and_buying_scores() -> None:
    env = WebShopEnv(observation_mode="rich")
    task = next(t for t in env.task_ids("test") if env.goal(t).options)
    env.reset(task)
    goal = env.goal(task)
    plan = env.privileged_state().data["plan"]
    for action in plan[:-1]:
        result = env.step(action)
    value = goal.options[0][1]
    assert f"[x {value}]" in result.observation and "[Buy Now]" in result.observation.splitlines()
    done = env.step(plan[-1])
    assert done.done and done.reward == 1.0 and done.success
    assert set(done.info["score_parts"]) >= {"r_type", "r_attribute", "r_option", "r_price"}
    after = env.step("click[buy now]")
    assert after.done and after.reward == 1.0 and after.info["invalid"]


@catalogue
def test_privileged_state_and_its_secrets() -> None:
    env, task = _target_first_page()
    goal = env.goal(task)
    state = env.privileged_state()
    assert goal.asin in state.text and all(a in state.text for a in goal.attributes)
    assert state.data["price_upper"] == goal.price_upper
    assert any(s.pattern == goal.asin for s in state.secrets)


@catalogue
def test_planner_buys_the_goal_on_200_test_goals() -> None:
    env = _env()
    tasks = list(env.task_ids("test"))[:200]
    episodes = run_episodes(lambda: WebShopEnv(), tasks, PlannerPolicy(), batch_size=32, show_progress=False)
    assert sum(e.success for e in episodes) >= 0.95 * len(tasks)
    assert all(e.n_invalid == 0 for e in episodes)


@catalogue
def test_teacher_levels_and_realizable_reasons() -> None:
    tasks = list(_env().task_ids("valid"))[:40]
    for privilege in (0, 25, 100):
        policy = ShopTeacherPolicy(privilege)
        episodes = run_episodes(lambda: WebShopEnv(), tasks, policy, batch_size=40, show_progress=False)
        rate = sum(e.success for e in episodes) / len(episodes)
        reasons = " ".join(s.reason for e in episodes for s in e.steps)
        asins = {_env().goal(t).asin for t in tasks}
        if privilege == 0:
            assert rate < 0.6
        else:
            assert rate >= 0.9
        named = any(a in reasons for a in asins)
        assert named == (privilege == 100)  # only 100 % names the hidden product
    with pytest.raises(ValueError):
        ShopTeacherPolicy(30)


@catalogue
def test_searcher_is_a_weaker_baseline_and_categories_are_product_groups() -> None:
    env = _env()
    tasks = list(env.task_ids("test"))[:40]
    episodes = run_episodes(lambda: WebShopEnv(), tasks, SearcherPolicy(), batch_size=40, show_progress=False)
    assert 0 < sum(e.success for e in episodes) < len(tasks)
    assert {env.category(t) for t in tasks} <= {"beauty", "electronics", "fashion", "garden", "grocery"}
    with pytest.raises(UnknownTaskError):
        env.reset("test/9999")
