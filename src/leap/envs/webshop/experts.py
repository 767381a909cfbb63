"""WebShop's programmatic policies: the privileged planner, the non-privileged searcher, and the
privileged teacher with realizable reasons at five privilege levels."""

from __future__ import annotations

from leap.envs.webshop.goals import Goal
from leap.envs.webshop.products import Product
from leap.envs.webshop.site import BACK, BUY, NEXT, PREV, SUB_PAGES, Page, Shop, group_of, transition
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


def _searcher_action(view: AgentView) -> tuple[str, str]:
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
        return [Decision(*_searcher_action(v)) for v in views]


class ShopTeacherPolicy(Policy):
    """Corrections from the privileged state, with reasons a student could have written.

    0 %: the searcher. 25 and 50 %: search with the instruction's words, then use the hidden target
    to page, open and configure; reasons speak of matching the instruction (50 % also names the
    options and price limit the goal wants). 75 %: search with the target's title words. 100 %:
    the planner, with reasons that name the target product.
    """

    privileged = True

    def __init__(self, privilege: int = 50) -> None:
        if privilege not in (0, 25, 50, 75, 100):
            raise ValueError("privilege must be one of 0, 25, 50, 75, 100")
        self.privilege = privilege
        self.name = f"webshop-teacher@{privilege}"

    def act(self, views: list[AgentView]) -> list[Decision]:
        return [self._one(v) for v in views]

    def _one(self, view: AgentView) -> Decision:
        if self.privilege == 0:
            return Decision(*_searcher_action(view))
        assert view.privileged is not None
        data = view.privileged.data
        if view.action_space.free_form is not None:
            query = data["title"].lower() if self.privilege >= 75 else instruction_query(view.task)
            return Decision(f"search[{query}]", self._reason("search", data))
        plan = data.get("plan") or []
        wanted = plan[0] if plan and plan[0] in view.action_space.choices else None
        if wanted is None or (wanted == f"click[{BACK}]" and self.privilege < 75):
            # the target is not among these results: a shopper without the title buys the best match
            return Decision(*_searcher_action(view))
        name = wanted[6:-1]
        if name == data["asin"].lower():
            kind = "open"
        elif name in (NEXT, PREV, BACK):
            kind = "page"
        else:
            kind = "buy" if name == BUY else "option"
        return Decision(wanted, self._reason(kind, data, name))

    def _reason(self, kind: str, data: dict, value: str = "") -> str:
        if self.privilege == 100:
            title = data["title"]
            return {
                "search": f"The product I need is {data['asin']}, {title}; I search for it.",
                "open": f"{data['asin']} is the product that satisfies the goal; I open it.",
                "page": f"{data['asin']} is not on this page; I keep looking for it.",
                "option": f"The goal wants {value} for {data['asin']}; I select it.",
                "buy": f"{data['asin']} has every option the goal wants; I buy it.",
            }[kind]
        extra = ""
        if self.privilege == 50 and kind in ("option", "buy"):
            limit = data["price_upper"]
            extra = f" It should stay under {limit:.2f} dollars." if limit < 1e6 else ""
        return {
            "search": "I search with the words of the instruction.",
            "open": "This result matches the attributes the instruction asks for; I open it.",
            "page": "None of these results fits the instruction well; I look further.",
            "option": f"The instruction asks for {value}; I select it.",
            "buy": "The item matches the instruction and its options are set; I buy it.",
        }[kind] + extra
