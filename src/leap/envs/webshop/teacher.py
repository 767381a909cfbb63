"""WebShop's programmatic privileged teacher, with realizable reasons at five privilege levels."""

from __future__ import annotations

from leap.envs.webshop.experts import instruction_query, searcher_action
from leap.envs.webshop.site import BACK, BUY, NEXT, PREV
from leap.policy import AgentView, Decision, Policy
from leap.privilege import LEVELS, check_level


class ShopTeacherPolicy(Policy):
    """Corrections from the privileged state, with reasons a student could have written.

    0 %: the searcher. 25 and 50 %: search with the instruction's words, then use the hidden target
    to page, open and configure; reasons speak of matching the instruction (50 % also names the
    options and price limit the goal wants). 75 %: search with the target's title words. 100 %:
    the planner, with reasons that name the target product.
    """

    privileged = True

    def __init__(self, privilege: int = 50) -> None:
        self.privilege = check_level(privilege, LEVELS, "webshop's programmatic teacher")
        self.name = f"webshop-teacher@{privilege}"

    def act(self, views: list[AgentView]) -> list[Decision]:
        return [self._one(v) for v in views]

    def _one(self, view: AgentView) -> Decision:
        if self.privilege == 0:
            return Decision(*searcher_action(view))
        assert view.privileged is not None
        data = view.privileged.data
        if view.action_space.free_form is not None:
            query = data["title"].lower() if self.privilege >= 75 else instruction_query(view.task)
            return Decision(f"search[{query}]", self._reason("search", data))
        plan = data.get("plan") or []
        wanted = plan[0] if plan and plan[0] in view.action_space.choices else None
        if wanted is None or (wanted == f"click[{BACK}]" and self.privilege < 75):
            # the target is not among these results: a shopper without the title buys the best match
            return Decision(*searcher_action(view))
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
