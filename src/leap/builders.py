"""Every component of a run, built from its settings in one place: the environment, the student,
the teacher (and its model), the experts and the trainer settings.

``leap run`` (through ``RunParts``), ``leap eval``, ``leap sweep`` and ``--dry-run`` all build
through here, so a setting means the same thing wherever it is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leap.agents import LLMPolicy, PromptSettings, StudentSettings
from leap.envs.registry import EnvSpec, env_spec
from leap.models.base import ChatModel
from leap.models.cache import CachedChatModel
from leap.models.registry import is_adapter_dir, load_chat_model, resolve_model_path
from leap.policy import Policy
from leap.teachers import LLMTeacher, ProgrammaticTeacher, Teacher

if TYPE_CHECKING:
    from leap.config import RunConfig
    from leap.envs.base import Environment
    from leap.layout import RunLayout
    from leap.models.vllm_backend import VLLMServer
    from leap.train import TrainSettings


def load_model(spec: str, local: dict[str, Any], server: dict[str, Any]) -> ChatModel:
    """The model ``spec`` with the ``server`` options for ``openai:MODEL``, else the ``local``
    ones (device, dtype, batch size, ...)."""
    return load_chat_model(spec, **(server if spec.startswith("openai:") else local))


def load_student_model(student: StudentSettings, spec: str | None = None) -> ChatModel:
    """The model ``spec`` (default: ``student.model``) loaded with the student's options; with
    ``student.engine: vllm`` served by a vLLM server of its own, stopped when the model is
    closed."""
    s = student
    if s.engine == "vllm" and not (spec or s.model).startswith("openai:"):
        from leap.models.vllm_backend import BASE_NAME, ServedChatModel

        base, adapter = base_and_adapter(spec or s.model)
        server = start_student_server(s, base, lora_rank=adapter_rank(adapter) if adapter else 16)
        name = server.load_adapter("leap-adapter", adapter) if adapter else BASE_NAME
        return ServedChatModel(server, name, base, max_concurrency=s.batch_size, owns_server=True)
    return load_model(
        spec or s.model,
        {
            "device": s.device,
            "dtype": s.dtype,
            "batch_size": s.batch_size,
            "cache": s.cache,
            "cudnn_attention": s.cudnn_attention,
        },
        {"base_url": s.base_url, "api_key_env": s.api_key_env, "max_concurrency": s.batch_size},
    )


def base_and_adapter(spec: str) -> tuple[str, str | None]:
    """The base model's directory of ``spec`` and its LoRA adapter directory, if it is one."""
    if is_adapter_dir(spec):
        base = json.loads((Path(spec) / "adapter_config.json").read_text())["base_model_name_or_path"]
        return resolve_model_path(base), spec
    return resolve_model_path(spec), None


def adapter_rank(adapter: str | Path) -> int:
    return int(json.loads((Path(adapter) / "adapter_config.json").read_text()).get("r", 16))


def start_student_server(
    student: StudentSettings, base: str, *, lora_rank: int, log_path: Path | None = None
) -> VLLMServer:
    """The vLLM server for the student's base model (the user's, at ``student.base_url``, or
    one started now, its output in ``log_path``), ready for adapters up to ``lora_rank``."""
    from leap.models.vllm_backend import VLLMServer

    dtype = "bfloat16" if student.dtype == "auto" else student.dtype
    return VLLMServer(
        base,
        base_url=student.base_url,
        python=student.vllm_python,
        max_lora_rank=lora_rank,
        dtype=dtype,
        extra_args=student.vllm_args,
        log_path=log_path,
    ).start()


def student_policy(
    model: ChatModel,
    student: StudentSettings,
    *,
    temperature: float,
    seed: int = 0,
    prompt: PromptSettings | None = None,
    name: str | None = None,
) -> LLMPolicy:
    return LLMPolicy(
        model,
        prompt=prompt or student.prompt,
        temperature=temperature,
        max_new_tokens=student.max_new_tokens,
        seed=seed,
        constrain_actions=student.constrain_actions,
        name=name or model.name,
    )


def build_policy(spec: str, env_name: str, student: StudentSettings | None = None, seed: int = 0) -> Policy:
    """``spec`` is an expert of the environment, a model registry name, a local model or LoRA
    adapter directory, or ``openai:MODEL`` (run with ``student``'s settings, at its
    ``eval_temperature``)."""
    env = env_spec(env_name)
    if spec in env.experts:
        return env.expert(spec)
    student = (student or StudentSettings()).model_copy(update={"model": spec})
    return student_policy(
        load_student_model(student), student, temperature=student.eval_temperature, seed=seed, name=spec
    )


class RunParts:
    """The components of one ``leap run``, built lazily from its config and reused: loading the
    same student twice costs nothing, and a finished stage never loads a model."""

    def __init__(self, config: RunConfig, layout: RunLayout) -> None:
        self.config = config
        self.layout = layout
        self.env: EnvSpec = env_spec(config.env.name)
        self._loaded: tuple[str, ChatModel] | None = None
        self._teacher_model: ChatModel | None = None
        self._server: VLLMServer | None = None

    # -- environment ------------------------------------------------------------------------------
    @property
    def make_env(self) -> Callable[[], Environment]:
        """A factory of fresh environment instances with the config's options."""
        return partial(self.env.make, **self.config.env.options)

    def check_splits(self) -> None:
        """Refuse a config whose splits the environment lacks before any work (a misnamed test
        split would otherwise fail after training). Raises ConfigError naming the key."""
        from leap.config import ConfigError
        from leap.envs.base import UnknownSplitError

        env = self.make_env()
        try:
            for key in ("train_split", "valid_split", "test_split"):
                try:
                    env.task_ids(getattr(self.config.env, key))
                except UnknownSplitError as exc:
                    raise ConfigError(f"env.{key}: {exc}") from None
        finally:
            env.close()

    # -- the student ------------------------------------------------------------------------------
    def student_model(self, adapter: Path | None) -> ChatModel:
        """The base student, or the base with the adapter of an iteration (kept while reused)."""
        spec = str(adapter) if adapter is not None else self.config.student.model
        if self.config.student.engine == "vllm" and not self.config.student.model.startswith("openai:"):
            return self._served_student(adapter)
        if self._loaded is None or self._loaded[0] != spec:
            self._loaded = None  # free the previous model before loading the next
            self._loaded = (spec, load_student_model(self.config.student, spec))
        return self._loaded[1]

    def _served_student(self, adapter: Path | None) -> ChatModel:
        """The student on the run's vLLM server (started on first use): the base model, or an
        iteration's adapter loaded under its own name (``leap-it1``, ``leap-matched-bc``...);
        adapters no stage uses any more are unloaded."""
        from leap.models.vllm_backend import BASE_NAME, ServedChatModel

        student = self.config.student
        base, _ = base_and_adapter(student.model)
        if self._server is None:
            log_path = self.layout.root / "vllm-server.log"
            self._server = start_student_server(
                student, base, lora_rank=self.config.train.lora_r, log_path=log_path
            )
        name = BASE_NAME if adapter is None else self._adapter_name(adapter)
        if self._loaded is None or self._loaded[0] != name:
            if adapter is not None:
                self._server.load_adapter(name, adapter)
            self._server.keep_only([name])
            model = ServedChatModel(self._server, name, base, max_concurrency=student.batch_size)
            self._loaded = (name, model)
        return self._loaded[1]

    def _adapter_name(self, adapter: Path) -> str:
        """``leap-itK`` for iteration K's adapter, ``leap-matched-bc`` for the budget-matched BC."""
        for k in range(self.config.loop.iterations + 1):
            if adapter == self.layout.adapter(k):
                return f"leap-it{k}"
        if adapter.parent == self.layout.matched_bc:
            return "leap-matched-bc"
        return "leap-" + adapter.parent.name.replace("_", "-")

    def close(self) -> None:
        """Stop the run's vLLM server, if it started one."""
        self._loaded = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    def student(
        self, adapter: Path | None, temperature: float, prompt: PromptSettings | None = None
    ) -> LLMPolicy:
        spec = str(adapter) if adapter is not None else self.config.student.model
        return student_policy(
            self.student_model(adapter),
            self.config.student,
            temperature=temperature,
            seed=self.config.seed,
            prompt=prompt,
            name=spec if prompt is None else f"{spec} ({prompt.style} prompt)",
        )

    def zero_shot_prompt(self) -> PromptSettings:
        """The instruction-only prompt of the untrained student (a reference row)."""
        clip = self.config.student.prompt.max_observation_chars
        return PromptSettings(style="react", max_observation_chars=clip)

    # -- experts and teachers ---------------------------------------------------------------------
    def demonstrator(self) -> Policy:
        """The expert whose rollouts are iteration 0's demonstrations."""
        d = self.config.demos
        if d.expert == "teacher":
            return self.env.teacher_policy(self.config.demo_privilege)
        return self.env.expert(d.expert)

    def teacher_model(self) -> ChatModel:
        """The LLM teacher's model behind the run's on-disk request cache (loaded once)."""
        if self._teacher_model is None:
            t, s = self.config.teacher, self.config.student
            if t.model is None:
                raise ValueError("teacher.model must name a model for an llm teacher or LLM-labelled reasons")
            model = load_model(
                t.model,
                {"device": s.device, "dtype": s.dtype, "cudnn_attention": s.cudnn_attention},
                {
                    "base_url": t.base_url,
                    "api_key_env": t.api_key_env,
                    "max_concurrency": t.max_concurrency,
                    "timeout": t.timeout_s,
                    "max_retries": t.request_retries,
                },
            )
            self._teacher_model = CachedChatModel(model, self.layout.teacher_cache)
        return self._teacher_model

    def teacher(self, k: int) -> Teacher:
        """The privileged teacher that corrects iteration ``k``'s rollouts."""
        t = self.config.teacher
        if t.kind == "programmatic":
            return ProgrammaticTeacher(self.env.teacher_policy(t.privilege), drop_leaks=t.leakage == "drop")
        if t.kind == "self":
            student = self.student_model(self.layout.adapter(k - 1))
            model: ChatModel = CachedChatModel(student, self.layout.teacher_cache)
            name: str | None = f"self(iter_{k - 1})@{t.privilege}/{t.mode}"
        else:
            model, name = self.teacher_model(), None
        return LLMTeacher(
            model,
            mode=t.mode,
            privilege=t.privilege,
            max_retries=t.max_retries,
            temperature=t.temperature,
            max_new_tokens=t.max_new_tokens,
            seed=self.config.seed,
            drop_leaks=t.leakage == "drop",
            budget=self.config.budget,
            name=name,
        )

    # -- training ---------------------------------------------------------------------------------
    def train_settings(self, k: int) -> TrainSettings:
        return self.config.train.for_iteration(k)
