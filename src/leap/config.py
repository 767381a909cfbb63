"""Run configuration: one YAML file, validated by pydantic; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leap.agents import PromptSettings
from leap.memory import MEMORY_NOTES
from leap.teachers.selection import CorrectionSteps


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSection(StrictModel):
    name: str = "household"
    #: keyword arguments for the environment factory (data directories, split sizes, ...)
    options: dict[str, Any] = Field(default_factory=dict)
    horizon: int | None = Field(default=None, ge=1)
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str = "test_ood"
    #: how many tasks of the validation / test split to evaluate (None: all)
    n_valid: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)


class PromptSection(StrictModel):
    style: Literal["student", "react"] = "student"
    history_steps: int = Field(default=6, ge=0)
    earlier_actions: int = Field(default=12, ge=0)
    max_observation_chars: int = Field(default=600, ge=0)
    list_actions: bool = True
    #: "single": the history as text in one user message; "turns": a chat transcript of the
    #: agent's own replies and the observations (with a full history, prompts then extend each
    #: other: prefix caching reuses them and training packs a whole episode into one sequence)
    layout: Literal["single", "turns"] = "single"
    #: a realizable note restating the agent's own history, a key of ``leap.memory.MEMORY_NOTES``
    #: ("places": the places it has not visited yet, after each move)
    memory: str = "none"

    @field_validator("memory")
    @classmethod
    def _known_memory(cls, value: str) -> str:
        if value not in MEMORY_NOTES:
            raise ValueError(f"unknown memory note {value!r}; use one of {tuple(MEMORY_NOTES)}")
        return value

    def settings(self) -> PromptSettings:
        return PromptSettings(
            self.style,
            self.history_steps,
            self.earlier_actions,
            self.max_observation_chars,
            self.list_actions,
            self.layout,
            self.memory,
        )


class StudentSection(StrictModel):
    model: str = "smollm2-135m"
    prompt: PromptSection = PromptSection()
    #: sampling temperature for rollouts on training tasks (the paper: 0.3)
    temperature: float = Field(default=0.3, ge=0)
    #: decoding for validation and test evaluation (0: greedy)
    eval_temperature: float = Field(default=0.0, ge=0)
    max_new_tokens: int = Field(default=256, ge=1)
    #: decode the ACTION line as one of the step's candidate actions (constrained decoding)
    constrain_actions: bool = False
    batch_size: int = Field(default=32, ge=1)
    device: str = "auto"
    dtype: str = "auto"


class TeacherSection(StrictModel):
    kind: Literal["programmatic", "llm", "self"] = "programmatic"
    privilege: Literal[0, 25, 50, 75, 100] = 50
    mode: Literal["trajectory", "step"] = "trajectory"
    #: the LLM teacher's model spec (llm kind): openai:gpt-4o, a local path, a registry name
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=8, ge=1)
    max_retries: int = Field(default=2, ge=0)
    temperature: float = Field(default=0.0, ge=0)
    max_new_tokens: int = Field(default=1024, ge=1)
    #: flag leaked reasons (kept and counted) or drop them from the training data
    leakage: Literal["flag", "drop"] = "flag"


class DemoSection(StrictModel):
    #: expert: roll out a programmatic policy on training tasks; file: read episodes from JSONL
    source: Literal["expert", "file"] = "expert"
    #: "teacher" (the programmatic teacher) or the name of one of the environment's experts
    expert: str = "teacher"
    #: the programmatic teacher's privilege level for demonstrations (default: teacher.privilege)
    privilege: Literal[0, 25, 50, 75, 100] | None = None
    path: Path | None = None
    n_episodes: int = Field(default=40, ge=1)
    #: keep the demonstrations' own reasons, or label every step's reason with the teacher model
    reasons: Literal["programmatic", "llm"] = "programmatic"


class LoopSection(StrictModel):
    iterations: int = Field(default=2, ge=0)
    #: training tasks rolled out by the student in each iteration (fresh tasks every iteration)
    rollouts_per_iteration: int = Field(default=40, ge=1)
    #: episodes scoring below this are sent to the teacher
    failure_threshold: float = 1.0
    #: which corrected steps become samples: all of them, or only those where the teacher's
    #: action differs from the student's (the steps that needed a correction)
    correction_steps: CorrectionSteps = "all"
    #: within one episode, train on at most this many corrected steps with the same action
    #: (None: all); a student stuck in a loop otherwise gets the same correction at every turn
    max_repeats_per_episode: int | None = Field(default=None, ge=1)
    #: most samples kept from each iteration in the aggregate (None: all)
    cap_per_iteration: int | None = Field(default=None, ge=1)
    #: reference rows on the test split: the environment's experts (privileged and not)
    reference_experts: bool = True
    #: ... and the untrained student with the instruction-only (ReAct) prompt
    reference_zero_shot: bool = True
    #: start each iteration's training from the base model or from the previous adapter
    init: Literal["base", "previous"] = "previous"


class TrainSection(StrictModel):
    rule: Literal["sft", "dpo", "kto"] = "sft"
    lora_r: int = Field(default=64, ge=1)
    lora_alpha: int = Field(default=128, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"
    learning_rate: float = Field(default=3e-5, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    #: if set, train this many optimizer steps on the shuffled aggregate instead of whole epochs
    max_steps: int | None = Field(default=None, ge=1)
    #: iteration 0 (behaviour cloning starts from the base model) may need more steps than the
    #: later iterations, which continue from the previous adapter; unset: max_steps
    bc_max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=2048, ge=16)
    beta: float = Field(default=0.01, gt=0)
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    device: str = "auto"


class BudgetSection(StrictModel):
    max_teacher_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)
    #: US dollars per million tokens, for cost accounting (gpt-4o list prices by default)
    price_input_per_m: float = 2.5
    price_output_per_m: float = 10.0


class TrackingSection(StrictModel):
    """metrics.jsonl is always written; these add TensorBoard / Weights & Biases sinks."""

    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "leap"
    #: offline works without a network (sync later with `wandb sync RUN/wandb/offline-run-*`)
    wandb_mode: Literal["offline", "online"] = "offline"


class RunConfig(StrictModel):
    name: str
    output_dir: Path = Path("runs")
    seed: int = 0
    env: EnvSection = EnvSection()
    student: StudentSection = StudentSection()
    teacher: TeacherSection = TeacherSection()
    demos: DemoSection = DemoSection()
    loop: LoopSection = LoopSection()
    train: TrainSection = TrainSection()
    budget: BudgetSection = BudgetSection()
    tracking: TrackingSection = TrackingSection()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("must be a plain directory name")
        return value

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming the key."""


def _format(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = len(error.errors()) - 1
    return f"{key}: {message}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def parse_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format(exc)}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML config; ``overrides`` are dotted keys (``loop.iterations: 1``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_config(data, str(path))
