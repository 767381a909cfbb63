"""Run configuration: one YAML file, validated by pydantic; unknown keys are errors."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from leap.agents import StudentSettings
from leap.layout import RunLayout
from leap.privilege import Privilege
from leap.settings import StrictModel
from leap.teachers.llm import Budget
from leap.teachers.selection import CorrectionSteps
from leap.train import TrainSettings


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


class TeacherSection(StrictModel):
    kind: Literal["programmatic", "llm", "self"] = "programmatic"
    #: how much of the privileged state the teacher reads and what its reasons may say: one
    #: meaning for every environment and the LLM prompts (``leap.privilege``)
    privilege: Privilege = 50
    mode: Literal["trajectory", "step"] = "trajectory"
    #: the LLM teacher's model spec (llm kind): openai:gpt-4o, a local path, a registry name
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=8, ge=1)
    #: an openai: teacher's seconds per request attempt, and attempts after a failed one (429,
    #: 5xx, dropped connection, timeout, unreadable reply), each counted by cause
    timeout_s: float = Field(default=120.0, gt=0)
    request_retries: int = Field(default=4, ge=0)
    #: requests again for replies that are unusable as a whole (no JSON, wrong length)
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
    privilege: Privilege | None = None
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
    #: "steps": the teacher corrects each step on the student's own history (LEAP); "takeover":
    #: from a step drawn between the student's first error and its last step, the teacher acts
    #: to the end of the episode and every one of its steps is a sample (a whole recovery in
    #: context; needs a programmatic teacher; correction_steps and max_repeats_per_episode do not
    #: apply)
    corrections: Literal["steps", "takeover"] = "steps"
    #: within one episode, train on at most this many corrected steps with the same action
    #: (None: all); a student stuck in a loop otherwise gets the same correction at every turn
    max_repeats_per_episode: int | None = Field(default=None, ge=1)
    #: most samples kept from each iteration in the aggregate (None: all)
    cap_per_iteration: int | None = Field(default=None, ge=1)
    #: which iterations the test split evaluates: BC and the best LEAP iteration on validation
    #: ("best"), or every iteration (the paper reports each; success need not rise with them)
    test_iterations: Literal["best", "all"] = "best"
    #: reference rows on the test split: the environment's experts (privileged and not)
    reference_experts: bool = True
    #: ... and the untrained student with the instruction-only (ReAct) prompt
    reference_zero_shot: bool = True
    #: start each iteration's training from the base model or from the previous adapter
    init: Literal["base", "previous"] = "previous"
    #: also train a budget-matched BC reference: behaviour cloning on more demonstrations, for as
    #: many samples and optimizer steps as the tested LEAP iteration used in total (iterations
    #: 0..k), tested on the same tasks; the fair baseline that says whether corrections matter
    matched_bc: bool = False
    #: where the budget-matched BC starts: "base", the base model trained for all of LEAP's
    #: optimizer steps; "bc", BC's own adapter (iteration 0, which LEAP starts from too) trained
    #: for the steps of LEAP's iterations 1..k, on the same number of samples as LEAP's union.
    #: Either way it has LEAP's samples and steps in total; "bc" mirrors ``init: previous``
    #: and costs only the continuation
    matched_bc_init: Literal["base", "bc"] = "base"


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
    student: StudentSettings = StudentSettings()
    teacher: TeacherSection = TeacherSection()
    demos: DemoSection = DemoSection()
    loop: LoopSection = LoopSection()
    train: TrainSettings = TrainSettings()
    budget: Budget = Budget()
    tracking: TrackingSection = TrackingSection()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError("must be a plain directory name")
        return value

    @model_validator(mode="after")
    def _takeover_needs_an_acting_teacher(self) -> RunConfig:
        if self.loop.corrections == "takeover" and self.teacher.kind != "programmatic":
            raise ValueError(
                f"loop.corrections: takeover needs teacher.kind: programmatic (a teacher that acts), "
                f"not {self.teacher.kind}"
            )
        return self

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    @property
    def layout(self) -> RunLayout:
        """Every path of the run directory."""
        return RunLayout(self.run_dir)

    @property
    def demo_privilege(self) -> int:
        """The programmatic teacher's level for demonstrations (``demos.privilege``, else the
        teacher's)."""
        return self.demos.privilege if self.demos.privilege is not None else self.teacher.privilege

    def check_resume(self) -> None:
        """Refuse to resume a run directory that holds a run of another config: its finished
        stages would be mixed with this config's. What may change between sessions is how far
        the run goes and what it adds at the end (``RESUMABLE_CHANGES``). Raises ConfigError
        naming the first key that differs."""
        saved = self.layout.config
        if not saved.is_file():
            return
        try:
            before = flatten_keys(yaml.safe_load(saved.read_text()) or {})
        except yaml.YAMLError:
            return  # a torn config.yaml is rewritten by the run
        now = flatten_keys(self.model_dump(mode="json"))
        # a key added to leap after the run began is absent from its saved config: at its
        # default it changes nothing
        defaults = flatten_keys(RunConfig(name=self.name).model_dump(mode="json"))
        for key in sorted(before.keys() | now.keys()):
            if _resumable(key) or before.get(key) == now.get(key):
                continue
            if key not in before and key in defaults and now.get(key) == defaults[key]:
                continue
            raise ConfigError(
                f"{self.run_dir} holds a run with {key}: {before.get(key)!r}, not {now.get(key)!r}; "
                "run it with its own config to resume it, or give this one another name "
                "(--set name=...)"
            )

    def check_environment(self) -> None:
        """Check what the chosen environment's spec can say without building it: that it exists,
        that its programmatic teacher has the privilege levels asked for, that the demonstrations'
        expert is one of its experts. Raises ConfigError naming the key."""
        from leap.envs.registry import UnknownEnvironmentError, env_spec

        try:
            spec = env_spec(self.env.name)
        except UnknownEnvironmentError as exc:
            raise ConfigError(f"env.name: {exc}") from None
        d = self.demos
        checks: list[tuple[str, Callable[[], object]]] = []
        if self.teacher.kind == "programmatic":
            checks.append(("teacher.privilege", partial(spec.check_teacher_level, self.teacher.privilege)))
        if d.source == "expert" and d.expert == "teacher":
            key = "demos.privilege" if d.privilege is not None else "teacher.privilege"
            checks.append((key, partial(spec.check_teacher_level, self.demo_privilege)))
        elif d.source == "expert":
            checks.append(("demos.expert", partial(spec.expert_class, d.expert)))
        for key, check in checks:
            try:
                check()
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None


#: settings that change how fast a run computes, not what (a run begun on a CPU may go on on a
#: GPU with its fast paths); runs whose configs differ only in them train the same models
SPEED_SETTINGS = (
    "student.cache",
    "student.cudnn_attention",
    "student.engine",
    "student.vllm_python",
    "student.vllm_args",
    "train.compile",
    "train.concatenate_rows",
    "train.cudnn_attention",
    "train.lanes",
    "train.micro_batch_size",
    "train.processes",
    "train.launcher_args",
)

#: config keys that may change when a run resumes (those ending in a dot: whole sections)
RESUMABLE_CHANGES = (
    "name",
    "output_dir",
    "loop.iterations",
    "loop.matched_bc",
    "loop.test_iterations",
    "loop.reference_experts",
    "loop.reference_zero_shot",
    "budget.",
    "tracking.",
    *SPEED_SETTINGS,
)


def _resumable(key: str) -> bool:
    """``key`` may change when a run resumes: one of RESUMABLE_CHANGES, or in a section that
    ends with a dot there."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_CHANGES)


def flatten_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys: {"loop": {"iterations": 2}} -> {"loop.iterations": 2}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming the key."""


def validation_message(error: ValidationError, name: Callable[[str], str] = str) -> str:
    """One line for a validation error: the first problem's key (``name`` turns a dotted key into
    what the user typed, e.g. a flag), what is wrong, and how many more problems there are."""
    first = error.errors()[0]
    key = name(".".join(str(p) for p in first["loc"])) if first["loc"] else "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    more = len(error.errors()) - 1
    if first["type"] == "value_error" and not first["loc"]:  # a check across sections names its keys
        return str(first["ctx"]["error"])
    return f"{key}: {message}" + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def parse_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_message(exc)}") from None
    try:
        config.check_environment()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config


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
