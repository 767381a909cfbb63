"""WebShop's programmatic policies: the privileged planner and the non-privileged searcher."""

from __future__ import annotations

from leap.envs.webshop.products import Product
from leap.envs.webshop.site import BACK, BUY, NEXT, PREV, SUB_PAGES, Page, Shop, group_of, transition
from leap.envs.webshop.tasks import Goal
from leap.policy import AgentView, Decision, Policy

#: most actions a plan may take (search, 5 pages, item, options, buy)
MAX_PLAN = 20


def instruction_query(instruction: str) -> str:
    """The part of a goal's instruction before its options and price limit: what a shopper who
    sees only the instruction would type."""
    cuts = [at for at in (_options_start(instruction), instruction.find(", and price lower than")) if at >= 0]
    return instruction[: min(cuts, default=len(instruction))].strip(" ,.")


def _options_start(instruction: str) -> int:
    start = 0
    while (at := instruction.find(" with ", start)) >= 0:
        rest = instruction[at + 6 :]
        head = rest.split(",")[0]
        if ":" in head and len(head.split(":")[0].split()) <= 3:
            return at
        start = at + 1
    return -1


def _option_clicks(page: Page, goal: Goal, product: Product) -> list[str]:
    """Goal options not chosen yet, as clicks, in the product's group order."""
    clicks = []
    for group, value in goal.options:
        group = group or group_of(product, value) or ""
        if group in product.options and value in product.options[group] and page.chosen.get(group) != value:
            clicks.append(f"click[{value}]")
    return clicks


def next_planned(page: Page, goal: Goal, shop: Shop, query: str) -> str:
    """The planner's next action: search, page to the target, open it, pick its options, buy."""
    if page.kind == "search":
        return f"search[{query}]"
    if page.kind in SUB_PAGES:
        return f"click[{PREV}]"
    if page.kind == "results":
        if goal.asin in page.visible_results():
            return f"click[{goal.asin.lower()}]"
        if goal.asin in page.results and page.results.index(goal.asin) < (page.page - 1) * 10:
            return f"click[{PREV}]"
        if page.has_next() and goal.asin in page.results:
            return f"click[{NEXT}]"
        return f"click[{BACK}]"
    if page.kind == "item":
        if page.asin != goal.asin:
            return f"click[{PREV}]"
        clicks = _option_clicks(page, goal, shop.products[goal.asin])
        return clicks[0] if clicks else f"click[{BUY}]"
    return ""


def title_query(shop: Shop, goal: Goal) -> str:
    return shop.products[goal.asin].title.lower()


def plan_from(page: Page, goal: Goal, shop: Shop) -> list[str]:
    """The planner's remaining actions from ``page`` (by simulating the pages)."""
    actions: list[str] = []
    query = title_query(shop, goal)
    while page.kind != "done" and len(actions) < MAX_PLAN:
        action = next_planned(page, goal, shop, query)
        nxt = transition(page, action, shop) if action else None
        if nxt is None:
            break
        actions.append(action)
        page = nxt
    return actions


class PlannerPolicy(Policy):
    """Privileged: searches with the target product's title, finds it in the results (paging if
    needed), picks the goal's options and buys."""

    name = "planner"
    privileged = True

    def act(self, views: list[AgentView]) -> list[Decision]:
        out = []
        for view in views:
            assert view.privileged is not None
            plan = view.privileged.data["plan"]
            out.append(Decision(plan[0] if plan else "click[buy now]", "I follow the plan."))
        return out


def searcher_action(view: AgentView) -> tuple[str, str]:
    """Search with the instruction's words, open the first result, pick the options the
    instruction names, buy."""
    choices = view.action_space.choices
    task = view.task.lower()
    if view.action_space.free_form is not None:
        return f"search[{instruction_query(view.task)}]", "I search for what the instruction describes."
    results = [c for c in choices if _is_asin_click(c)]
    if results:
        return results[0], "The first result is the closest match to the instruction; I open it."
    if f"click[{BUY}]" in choices:
        for c in choices:
            value = c[6:-1]
            if value not in (BACK, PREV, BUY, *SUB_PAGES) and value in task and not _clicked(view, c):
                return c, f"The instruction asks for {value}; I select it."
        return f"click[{BUY}]", "The item fits the instruction, so I buy it."
    return f"click[{PREV}]" if f"click[{PREV}]" in choices else f"click[{BACK}]", "I go back."


def _clicked(view: AgentView, action: str) -> bool:
    return any(t.action == action for t in view.history)


def _is_asin_click(action: str) -> bool:
    name = action[6:-1] if action.startswith("click[") else ""
    return len(name) == 10 and name.startswith("b0") and name.isalnum()


class SearcherPolicy(Policy):
    """Not privileged: the instruction's words as the query, the first result, its named options."""

    name = "searcher"
    privileged = False

    def act(self, views: list[AgentView]) -> list[Decision]:
        return [Decision(*searcher_action(v)) for v in views]
