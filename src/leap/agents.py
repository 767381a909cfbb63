"""The LLM student policy: Jinja prompt, REASON/ACTION parsing, and matching to the candidates.

The same class is the ReAct baseline when given the instruction-only ``react`` prompt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

import jinja2
import jinja2.meta
from pydantic import Field, ValidationInfo, field_validator

from leap.envs.base import ActionSpace
from leap.memory import MEMORY_NOTES, memory_items
from leap.models.base import ChatModel, ChoiceConstraint, Conversation
from leap.policy import AgentView, Decision, Policy
from leap.settings import StrictModel

PROMPT_STYLES = ("student", "react")
#: "single": one user message holding the history as text; "turns": a chat transcript in which
#: the agent's own past replies are assistant turns and each observation a user turn
PROMPT_LAYOUTS = ("single", "turns")


def _clip(text: str, limit: int) -> str:
    return text if limit <= 0 or len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=1)
def prompt_environment() -> jinja2.Environment:
    """Jinja environment over leap/prompts, shared by every prompt the project renders."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("leap", "prompts"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
        # the package's templates do not change while a run reads them: no file check per use
        auto_reload=False,
    )
    env.filters["clip"] = _clip
    return env


class PromptSettings(StrictModel):
    """How the student's prompt is built (``student.prompt`` in a run config)."""

    #: "student" (trained: REASON/ACTION replies) or "react" (instruction-only, untrained models)
    style: str = "student"
    #: most past steps shown in full (action and result)
    history_steps: int = Field(default=6, ge=0)
    #: older actions listed by name only, most recent last (the agent's memory of where it has
    #: been); anything older still is summarised as a count
    earlier_actions: int = Field(default=12, ge=0)
    #: observations longer than this are clipped (0: never)
    max_observation_chars: int = Field(default=600, ge=0)
    #: list the candidate actions in the prompt (with constrained decoding a student can do
    #: without the list, which is often half of the prompt)
    list_actions: bool = True
    #: "single": the history as text in one user message; "turns": a chat transcript of the
    #: agent's own replies and the observations (with a full history, prompts then extend each
    #: other: prefix caching reuses them and training packs a whole episode into one sequence)
    layout: str = "single"
    #: a realizable note restating the agent's own history, a key of ``leap.memory.MEMORY_NOTES``
    #: ("places": the places it has not visited yet, after each move)
    memory: str = "none"

    @field_validator("style", "layout", "memory")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        what, choices = {
            "style": ("prompt style", PROMPT_STYLES),
            "layout": ("prompt layout", PROMPT_LAYOUTS),
            "memory": ("memory note", tuple(MEMORY_NOTES)),
        }[str(info.field_name)]
        if value not in choices:
            raise ValueError(f"unknown {what} {value!r}; use one of {choices}")
        return value

    @property
    def templates(self) -> tuple[str, ...]:
        """The template files this setting renders (their hash goes into every sample)."""
        system = f"agent/system_{self.style}.j2"
        if self.layout == "single":
            return ("agent/user.j2", system)
        return ("agent/turn_first.j2", "agent/turn_next.j2", system)


class StudentSettings(StrictModel):
    """A model acting as the student (``student`` in a run config; the model flags of ``leap
    eval``): which model, how it is prompted and decoded, and where it runs."""

    #: a registry name (smollm2-135m, tiny-random), a model or LoRA adapter directory, or
    #: openai:MODEL for a model behind an OpenAI-compatible server
    model: str = "smollm2-135m"
    prompt: PromptSettings = PromptSettings()
    #: sampling temperature for rollouts on training tasks (the paper: 0.3)
    temperature: float = Field(default=0.3, ge=0)
    #: decoding for validation and test evaluation (0: greedy)
    eval_temperature: float = Field(default=0.0, ge=0)
    max_new_tokens: int = Field(default=256, ge=1)
    #: decode the ACTION line as one of the step's candidate actions (constrained decoding)
    constrain_actions: bool = False
    #: episodes advanced together (one batched model call per step)
    batch_size: int = Field(default=32, ge=1)
    #: local models: auto, cpu, cuda, cuda:N; and auto, float32, bfloat16, float16
    device: str = "auto"
    dtype: str = "auto"
    #: local models: how generation keeps keys and values. "prefix": each step resumes from the
    #: keys and values of the episode's previous step (the fastest on CPU); "dynamic": every step
    #: computes its whole prompt; "static": a preallocated cache, with which transformers compiles
    #: the decoding step on a GPU; "graphs": a preallocated cache and leap's decoding loop, each
    #: step replaying one CUDA graph on a GPU (docs/speed.md)
    cache: Literal["prefix", "dynamic", "static", "graphs"] = "prefix"
    #: local models on a GPU: let attention use cuDNN's fused kernels where PyTorch tries them
    #: first (H100, H200, B200 with CUDA 13 wheels); off: flash, memory-efficient and math only
    #: (``leap.models.attention_kernels``)
    cudnn_attention: bool = False
    #: openai:MODEL: the server's URL and the variable holding its API key; with engine vllm, a
    #: vLLM server the user runs (started with --enable-lora and
    #: VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) instead of one leap starts
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    #: what runs the student: "leap", transformers in this process with leap's decoding; "vllm",
    #: a vLLM server (started for the run and stopped with it, or base_url) into which each
    #: iteration's LoRA adapter is loaded (``leap.models.vllm_backend``)
    engine: Literal["leap", "vllm"] = "leap"
    #: engine vllm: the Python that has vLLM (None: $LEAP_VLLM_PYTHON, else the checkout's
    #: .venv-vllm from ``bash scripts/setup.sh --vllm``, else this Python)
    vllm_python: str | None = None
    #: engine vllm: more flags for the server (e.g. [--data-parallel-size, "8"])
    vllm_args: tuple[str, ...] = ()


def format_completion(reason: str, action: str) -> str:
    """The reply format the student writes and is trained to produce."""
    return f"REASON: {' '.join(reason.split())}\nACTION: {action}"


def step_context(view: AgentView, settings: PromptSettings) -> dict[str, Any]:
    """Template variables for one step: the task, the first observation (the room, the page the
    episode starts on), the recent history as (action, result) pairs and the candidates. Student
    and teacher prompts share it."""
    observations = [t.observation for t in view.history] + [view.observation]
    steps = [{"action": t.action, "result": observations[i + 1]} for i, t in enumerate(view.history)]
    shown = steps[-settings.history_steps :] if settings.history_steps > 0 else []
    older = steps[: len(steps) - len(shown)]
    earlier = [s["action"] for s in older[-settings.earlier_actions :]] if settings.earlier_actions else []
    space = view.action_space
    return {
        "task": view.task,
        "first_observation": observations[0],
        "memory": memory_items(settings.memory, observations[0], [t.action for t in view.history]),
        "history": shown,
        "earlier": earlier,
        "omitted": len(older) - len(earlier),
        "choices": space.choices,
        "list_actions": settings.list_actions,
        "free_form": space.free_form.description if space.free_form else "",
        "max_observation_chars": settings.max_observation_chars,
    }


def render_prompt(view: AgentView, settings: PromptSettings) -> Conversation:
    """The chat messages for one step: the system instructions, then either one compact user
    message (``single``) or the episode as a transcript of turns (``turns``)."""
    env = prompt_environment()
    system = env.get_template(f"agent/system_{settings.style}.j2").render()
    messages = [{"role": "system", "content": system.strip()}]
    if settings.layout == "single":
        user = env.get_template("agent/user.j2").render(**step_context(view, settings))
        return [*messages, {"role": "user", "content": user.strip()}]
    return messages + _transcript(view, settings)


def _transcript(view: AgentView, settings: PromptSettings) -> Conversation:
    """The last ``history_steps`` turns in full: each past reply as the assistant's message, each
    observation as the user's. Under a full history every prompt extends the one before, which is
    what prefix caching and whole-episode training build on."""
    env = prompt_environment()
    context = step_context(view, settings)
    turns = view.history[-settings.history_steps :] if settings.history_steps > 0 else ()
    omitted = len(view.history) - len(turns)
    observations = [t.observation for t in view.history] + [view.observation]
    first = env.get_template("agent/turn_first.j2").render({**context, "omitted": omitted})
    messages = [{"role": "user", "content": first.strip()}]
    last = env.get_template("agent/turn_next.j2")
    for k, turn in enumerate(turns):
        step = omitted + k
        messages.append({"role": "assistant", "content": format_completion(turn.reason, turn.action)})
        is_last = k == len(turns) - 1
        memory = memory_items(settings.memory, observations[0], [t.action for t in view.history[: step + 1]])
        variables = {**context, "observation": observations[step + 1], "current": is_last, "memory": memory}
        if is_last:
            text = last.render(variables)
        else:  # a past turn, shown without the current step's candidates: the same at every step
            text = render_remembered(last, {**variables, "choices": (), "free_form": ""})
        messages.append({"role": "user", "content": text.strip()})
    if not turns:
        # the first step: the candidate list (when shown) goes under the first observation
        text = last.render(context, observation="", current=True, memory=[]).strip()
        if text:
            messages[0]["content"] += "\n" + text
    return messages


#: texts rendered by :func:`render_remembered`, emptied when it holds more than RENDER_MEMO
_RENDERED: dict[tuple, str] = {}
RENDER_MEMO = 65_536
#: remember rendered turns; off only to measure what that saves (every past turn of a transcript
#: is then rendered again at every step)
REMEMBER_RENDERS = True
#: a variable the caller did not give (its template then fails to render, as without the memo)
_UNSET = object()


@cache
def _template_reads(template: jinja2.Template) -> tuple[str, ...] | None:
    """The variables a template reads, or None where it includes or imports other templates (what
    they read is not in its own source)."""
    env = template.environment
    assert env.loader is not None and template.name is not None
    tree = env.parse(env.loader.get_source(env, template.name)[0])
    if any(True for _ in jinja2.meta.find_referenced_templates(tree)):
        return None
    return tuple(sorted(jinja2.meta.find_undeclared_variables(tree)))


def _frozen(value: Any) -> Any:
    """A key for a template value: containers as tuples, every value with its type (1, 1.0 and
    True are equal keys but render differently)."""
    if type(value) is str:
        return value
    if isinstance(value, list | tuple):
        return tuple(map(_frozen, value))
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return type(value), value


def render_remembered(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """``template.render(variables)``, remembered by the values of the variables the template
    reads: a transcript prompt renders every earlier turn again at each step (O(T) renders per
    step, most of the agent's own prompt work over 20 steps)."""
    reads = _template_reads(template) if REMEMBER_RENDERS else None
    if reads is None:
        return template.render(variables)
    key = (template.name, *(_frozen(variables.get(name, _UNSET)) for name in reads))
    try:
        text = _RENDERED.get(key)
    except TypeError:  # a value that cannot be a key (a set, an object)
        return template.render(variables)
    if text is None:
        text = template.render(variables)
        if len(_RENDERED) >= RENDER_MEMO:
            _RENDERED.clear()
        _RENDERED[key] = text
    return text


def prompt_sha(conversation: Conversation) -> str:
    blob = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in conversation)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- parsing -------------------------------------------------------------------------------------
_MARKER = re.compile(r"(?i)(?:^|(?<=[\s*#>\-]))(reason(?:ing)?|thought|action)\s*\**\s*[:：]\s*\**\s*")


@dataclass(frozen=True)
class ParsedReply:
    reason: str
    action: str
    #: both REASON and ACTION sections were present
    well_formed: bool


def _strip_wrapping(text: str) -> str:
    text = text.strip().strip("*").strip()
    for left, right in (("`", "`"), ('"', '"'), ("'", "'"), ("<", ">")):
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            text = text[1:-1].strip()
    return text


def parse_reply(text: str) -> ParsedReply:
    """Read ``REASON: ... ACTION: ...`` from a reply, forgiving case, markdown and extra text."""
    markers = list(_MARKER.finditer(text))
    sections: dict[str, str] = {}
    for k, m in enumerate(markers):
        kind = "action" if m.group(1).lower() == "action" else "reason"
        end = markers[k + 1].start() if k + 1 < len(markers) else len(text)
        sections.setdefault(kind, text[m.end() : end].strip().strip("*#").strip())
    if "action" in sections:
        lines = [ln for ln in sections["action"].splitlines() if ln.strip()]
        action = _strip_wrapping(lines[0]) if lines else ""
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        action = _strip_wrapping(lines[-1]) if lines and "reason" not in sections else ""
    reason = " ".join(sections.get("reason", "").split())
    return ParsedReply(reason, action, "reason" in sections and "action" in sections)


def normalise_action(text: str) -> str:
    text = text.strip().lower()
    text = re.sub(r"^(?:>\s*|\d+[.)]\s+)", "", text)
    text = " ".join(text.split())
    return text.strip(" .,;:!\"'`")


def match_action(text: str, space: ActionSpace) -> tuple[str, bool]:
    """Map a model's action to a candidate: exact, then normalised, then the free-form rule.

    Returns (action, matched). An unmatched action comes back unchanged, to be passed to the
    environment as is and counted as invalid.
    """
    if text in space.choices:
        return text, True
    wanted = normalise_action(text)
    for choice in space.choices:
        if normalise_action(choice) == wanted:
            return choice, True
    if space.free_form is not None and space.free_form.accepts(text.strip()):
        return text.strip(), True
    return text, False


# -- policy --------------------------------------------------------------------------------------
class LLMPolicy(Policy):
    """A chat model acting through the REASON/ACTION format; one batched call per step."""

    privileged = False

    def __init__(
        self,
        model: ChatModel,
        *,
        prompt: PromptSettings | None = None,
        temperature: float = 0.0,
        max_new_tokens: int = 64,
        seed: int = 0,
        stop: Sequence[str] = ("\n\n",),
        constrain_actions: bool = False,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.prompt = prompt or PromptSettings(style="react")
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.stop = tuple(stop)
        #: decode the ACTION line as one of the step's candidates (local models only)
        self.constrain_actions = constrain_actions
        self.name = name or model.name
        self._calls = 0

    @property
    def concurrent(self) -> bool:  # type: ignore[override]
        return self.model.concurrent

    @staticmethod
    def _constraint(view: AgentView) -> ChoiceConstraint | None:
        """Candidates bind the ACTION line unless free-form actions are also allowed."""
        space = view.action_space
        if not space.choices or space.free_form is not None:
            return None
        return ChoiceConstraint("ACTION:", tuple(space.choices))

    def act(self, views: list[AgentView]) -> list[Decision]:
        conversations = [render_prompt(v, self.prompt) for v in views]
        generations = self.model.generate(
            conversations,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
            # concurrent calls (a model on a server) take their seeds in the order they come;
            # a served model also mixes each request's prompt into its seed
            seed=self.seed + self._calls,
            stop=self.stop,
            constraints=[self._constraint(v) for v in views] if self.constrain_actions else None,
        )
        self._calls += 1
        decisions = []
        for view, conv, gen in zip(views, conversations, generations, strict=True):
            parsed = parse_reply(gen.text)
            action, matched = match_action(parsed.action, view.action_space)
            extra: dict[str, Any] = {"matched": matched, "well_formed": parsed.well_formed}
            if gen.error:
                extra["error"] = gen.error
            decisions.append(
                Decision(
                    action=action,
                    reason=parsed.reason,
                    raw=gen.text,
                    prompt_sha=prompt_sha(conv),
                    extra=extra,
                )
            )
        return decisions
