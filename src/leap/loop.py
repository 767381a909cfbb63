"""The LEAP loop, staged and resumable.

    iteration 0: demonstrations -> samples D_0 -> train pi_0 -> evaluate on validation
    iteration i: roll out pi_{i-1} on fresh training tasks -> the privileged teacher corrects the
                 failed episodes -> samples D_i -> train pi_i on D_0 ∪ ... ∪ D_i -> evaluate
    finally:     pick the best iteration on validation -> test BC and the best LEAP iteration

Every stage writes its output into ``RUN/iter_k/`` atomically and is skipped when that output
exists, so ``leap run CONFIG`` after a kill resumes at the first unfinished stage. Rollouts also
resume mid-way (finished episodes are kept), and teacher requests are cached on disk by content.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leap.agents import LLMPolicy, PromptSettings
from leap.config import RunConfig
from leap.data import Sample, aggregate, export, load_samples, make_sample
from leap.envs.base import Environment
from leap.envs.registry import env_factory
from leap.evaluate import evaluate
from leap.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from leap.models.base import ChatModel
from leap.models.cache import CachedChatModel
from leap.models.registry import load_chat_model, resolve_model_path
from leap.policy import Policy
from leap.rollout import Episode
from leap.teachers import Budget, BudgetExceeded, EpisodeCorrection, LLMTeacher, ProgrammaticTeacher, Teacher
from leap.teachers.selection import select_steps
from leap.tracking import Tracker
from leap.train import TrainSettings, train_adapter

log = logging.getLogger(__name__)


@dataclass
class IterationResult:
    iteration: int
    valid: dict[str, Any]


class LeapRun:
    """One run directory and the stages that fill it."""

    def __init__(self, config: RunConfig, *, on_stage: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.dir = config.run_dir
        self.on_stage = on_stage or (lambda message: log.info("%s", message))
        self.prompt = config.student.prompt.settings()
        self._teacher_model: ChatModel | None = None
        #: the last student model loaded, reused while the same adapter is needed
        self._loaded: tuple[str, ChatModel] | None = None
        self._tracker: Tracker | None = None

    # -- small helpers ---------------------------------------------------------------------------
    def iter_dir(self, k: int) -> Path:
        return self.dir / f"iter_{k}"

    def make_env(self) -> Environment:
        return env_factory(self.config.env.name)(**self.config.env.options)

    def env_class(self) -> type[Environment]:
        """The environment's class, for its class-level hooks (experts, programmatic teacher)."""
        env = self.make_env()
        env.close()
        return type(env)

    def _metric(self, iteration: int | str | None, stage: str, **values: Any) -> None:
        if self._tracker is None:
            t = self.config.tracking
            self._tracker = Tracker(
                self.dir,
                tensorboard=t.tensorboard,
                wandb=t.wandb,
                wandb_project=t.wandb_project,
                wandb_mode=t.wandb_mode,
                name=self.config.name,
                config=self.config.model_dump(mode="json"),
            )
        self._tracker.log(iteration, stage, **values)

    def _student(
        self, adapter: Path | None, temperature: float, prompt: PromptSettings | None = None
    ) -> LLMPolicy:
        s = self.config.student
        spec = str(adapter) if adapter is not None else s.model
        if self._loaded is None or self._loaded[0] != spec:
            self._loaded = None  # free the previous model before loading the next
            self._loaded = (
                spec,
                load_chat_model(spec, device=s.device, dtype=s.dtype, batch_size=s.batch_size),
            )
        model = self._loaded[1]
        return LLMPolicy(
            model,
            prompt=prompt or self.prompt,
            temperature=temperature,
            max_new_tokens=s.max_new_tokens,
            seed=self.config.seed,
            constrain_actions=s.constrain_actions,
            name=spec if prompt is None else f"{spec} ({prompt.style} prompt)",
        )

    def adapter(self, k: int) -> Path:
        return self.iter_dir(k) / "adapter"

    # -- stages ----------------------------------------------------------------------------------
    def _rollout(
        self, out: Path, split: str, policy: Callable[[], Policy], n: int | None, offset: int = 0
    ) -> tuple[dict[str, Any], bool]:
        """Run (or resume) a rollout into ``out``; returns its summary and whether it ran now.

        ``policy`` is a factory, so a finished stage never loads a model."""
        if (out / "summary.json").exists():
            return json.loads((out / "summary.json").read_text()), False
        summary = evaluate(
            self.config.env.name,
            split,
            policy(),
            n=n,
            offset=offset,
            out_dir=out,
            batch_size=self.config.student.batch_size,
            horizon=self.config.env.horizon,
            env_options=self.config.env.options,
            resume=True,
        )
        return summary, True

    def demonstrations(self) -> list[Episode]:
        """Iteration 0's episodes: an expert's rollouts, or logs from a JSONL file."""
        d, out = self.config.demos, self.iter_dir(0) / "demos"
        if d.source == "file":
            if d.path is None or not d.path.is_file():
                raise FileNotFoundError(f"demos.path: no such file {d.path}")
            return [Episode.from_record(r) for r in read_jsonl(d.path)][: d.n_episodes]
        env_cls = self.env_class()
        if d.expert == "teacher":
            level = d.privilege if d.privilege is not None else self.config.teacher.privilege
            expert = env_cls.programmatic_teacher(level)
            if expert is None:
                raise ValueError(f"{self.config.env.name} has no programmatic teacher; set demos.expert")
        else:
            experts = env_cls.experts()
            if d.expert not in experts:
                raise ValueError(f"demos.expert: {self.config.env.name} has no expert {d.expert!r}")
            expert = experts[d.expert]()
        self._rollout(out, self.config.env.train_split, lambda: expert, d.n_episodes)
        return [Episode.from_record(r) for r in read_jsonl(out / "episodes.jsonl")]

    def demo_samples(self) -> list[Sample]:
        path = self.iter_dir(0) / "samples.jsonl"
        if path.exists():
            return load_samples([path])
        self.on_stage("iteration 0 · demonstrations")
        episodes = [e for e in self.demonstrations() if e.success and e.error is None]
        if self.config.demos.reasons == "llm":
            from leap.teachers.labelling import label_reasons

            episodes = label_reasons(episodes, self.teacher_model(), self.prompt)
        samples = [
            make_sample(
                e,
                t,
                iteration=0,
                teacher=f"demo:{self.config.demos.expert}",
                reason=s.reason,
                action=s.action,
                settings=self.prompt,
            )
            for e in episodes
            for t, s in enumerate(e.steps)
        ]
        atomic_write_jsonl(path, [s.to_record() for s in samples])
        self._metric(0, "demos", episodes=len(episodes), samples=len(samples))
        return samples

    def teacher_model(self) -> ChatModel:
        """The LLM teacher's model behind the on-disk request cache (loaded once)."""
        if self._teacher_model is None:
            t = self.config.teacher
            if t.model is None:
                raise ValueError("teacher.model must name a model for an llm teacher or LLM-labelled reasons")
            options: dict[str, Any] = (
                {"base_url": t.base_url, "api_key_env": t.api_key_env, "max_concurrency": t.max_concurrency}
                if t.model.startswith("openai:")
                else {"device": self.config.student.device, "dtype": self.config.student.dtype}
            )
            self._teacher_model = CachedChatModel(
                load_chat_model(t.model, **options), self.dir / "teacher_cache.jsonl"
            )
        return self._teacher_model

    def teacher(self, k: int) -> Teacher:
        t, b = self.config.teacher, self.config.budget
        if t.kind == "programmatic":
            policy = self.env_class().programmatic_teacher(t.privilege)
            if policy is None:
                raise ValueError(f"{self.config.env.name} has no programmatic teacher; use teacher.kind llm")
            return ProgrammaticTeacher(policy)
        budget = Budget(b.max_teacher_tokens, b.max_cost_usd, b.price_input_per_m, b.price_output_per_m)
        if t.kind == "self":
            student = self._student(self.adapter(k - 1), t.temperature).model
            model: ChatModel = CachedChatModel(student, self.dir / "teacher_cache.jsonl")
            name = f"self(iter_{k - 1})@{t.privilege}/{t.mode}"
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
            budget=budget,
            name=name,
        )

    def corrections(self, k: int, episodes: list[Episode]) -> list[EpisodeCorrection]:
        path = self.iter_dir(k) / "corrections.jsonl"
        if path.exists():
            return [EpisodeCorrection.from_record(r) for r in read_jsonl(path)]
        failed = [
            e
            for e in episodes
            if e.score < self.config.loop.failure_threshold and e.error is None and e.steps
        ]
        self.on_stage(f"iteration {k} · teacher corrects {len(failed)} failed episodes")
        teacher = self.teacher(k)
        model = getattr(teacher, "model", None)
        before = model.usage.to_dict() if model is not None else {}
        corrections = teacher.correct(failed, self.make_env)
        atomic_write_jsonl(path, [c.to_record() for c in corrections])
        rejections: Counter[str] = Counter()
        for c in corrections:
            rejections.update(c.rejections)
        accepted = [s for c in corrections for s in c.steps]
        usage = model.usage.to_dict() if model is not None else {}
        spent = {key: usage[key] - before.get(key, 0) for key in usage}
        b = self.config.budget
        stats = {
            "teacher": teacher.name,
            "episodes_corrected": len(corrections),
            "steps_accepted": len(accepted),
            "steps_rejected": sum(rejections.values()),
            "rejections": dict(rejections),
            "leaked_steps": sum(bool(s.leaks) for s in accepted),
            "leakage_rate": sum(bool(s.leaks) for s in accepted) / len(accepted) if accepted else 0.0,
            "usage": spent,
            "cache_hits": getattr(model, "hits", 0),
            "cost_usd": (
                spent.get("prompt_tokens", 0) * b.price_input_per_m
                + spent.get("completion_tokens", 0) * b.price_output_per_m
            )
            / 1e6,
        }
        atomic_write_json(self.iter_dir(k) / "teacher_stats.json", stats)
        self._metric(k, "correct", **stats)
        return corrections

    def correction_samples(self, k: int) -> list[Sample]:
        path = self.iter_dir(k) / "samples.jsonl"
        if path.exists():
            return load_samples([path])
        n = self.config.loop.rollouts_per_iteration
        offset = (k - 1) * n
        split = self.config.env.train_split
        self.on_stage(f"iteration {k} · student rollouts on {split} tasks {offset}..{offset + n - 1}")
        summary, ran = self._rollout(
            self.iter_dir(k) / "rollout",
            split,
            lambda: self._student(self.adapter(k - 1), self.config.student.temperature),
            n,
            offset=offset,
        )
        if ran:
            self._metric(k, "rollout", **_headline(summary))
        episodes = [
            Episode.from_record(r) for r in read_jsonl(self.iter_dir(k) / "rollout" / "episodes.jsonl")
        ]
        by_id = {e.episode_id: e for e in episodes}
        samples = []
        loop = self.config.loop
        dropped: Counter[str] = Counter()
        for correction in self.corrections(k, episodes):
            episode = by_id[correction.episode_id]
            kept, skipped = select_steps(
                correction, episode, steps=loop.correction_steps, max_repeats=loop.max_repeats_per_episode
            )
            dropped.update(skipped)
            for s in kept:
                samples.append(
                    make_sample(
                        episode,
                        s.step,
                        iteration=k,
                        teacher=correction.teacher,
                        reason=s.reason,
                        action=s.action,
                        settings=self.prompt,
                        rejected=episode.steps[s.step].raw,
                        leaked=bool(s.leaks),
                    )
                )
        if dropped:
            log.info("iteration %d: corrected steps not trained on: %s", k, dict(dropped))
        self._metric(k, "select", samples=len(samples), dropped=dict(dropped))
        atomic_write_jsonl(path, [s.to_record() for s in samples])
        return samples

    def train(self, k: int, per_iteration: list[list[Sample]]) -> None:
        if (self.adapter(k) / "adapter_config.json").exists():
            return
        cfg, loop = self.config.train, self.config.loop
        union = aggregate(per_iteration, loop.cap_per_iteration)
        if not union:
            raise RuntimeError(
                f"iteration {k}: no training samples (did every demonstration fail? "
                "check env.horizon and demos)"
            )
        data_file = self.iter_dir(k) / "train" / f"{cfg.rule}.jsonl"
        rule = cfg.rule if k > 0 else "sft"  # demonstrations have no rejected replies: BC is SFT
        rows = export(union, rule, data_file)
        self.on_stage(f"iteration {k} · {rule} on {rows} rows (iterations 0..{k})")
        init = self.adapter(k - 1) if k > 0 and loop.init == "previous" else None
        fields = cfg.model_dump(exclude={"bc_max_steps"})
        if k == 0 and cfg.bc_max_steps:
            fields["max_steps"] = cfg.bc_max_steps
        settings = TrainSettings(**{**fields, "rule": rule}, seed=self.config.seed + k)
        metrics = train_adapter(
            resolve_model_path(self.config.student.model),
            data_file,
            self.adapter(k),
            settings,
            init_adapter=init,
        )
        self._metric(
            k,
            "train",
            rows=rows,
            samples=len(union),
            **{key: metrics[key] for key in ("steps", "train_loss", "train_runtime_s")},
            loss_curve=metrics["loss_curve"],
        )

    def _evaluate_adapter(self, k: int, out: Path, split: str, n: int | None, stage: str) -> dict[str, Any]:
        if not (out / "summary.json").exists():
            self.on_stage(f"iteration {k} · {stage} on {split}")
        summary, ran = self._rollout(
            out, split, lambda: self._student(self.adapter(k), self.config.student.eval_temperature), n
        )
        if ran:
            self._metric(k, stage, **_details(summary))
        return summary

    def validate(self, k: int) -> dict[str, Any]:
        env = self.config.env
        return self._evaluate_adapter(
            k, self.iter_dir(k) / "eval_valid", env.valid_split, env.n_valid, "valid"
        )

    def test(self, k: int) -> dict[str, Any]:
        env = self.config.env
        return self._evaluate_adapter(
            k, self.dir / "final" / f"test_iter_{k}", env.test_split, env.n_test, "test"
        )

    def references(self) -> dict[str, dict[str, Any]]:
        """Reference rows on the test split: the environment's experts (programmatic, cheap) and
        the untrained student with the instruction-only prompt, as the config asks."""
        env, loop, s = self.config.env, self.config.loop, self.config.student
        policies: dict[str, Callable[[], Policy]] = {}
        if loop.reference_experts:
            policies.update(sorted(self.env_class().experts().items()))
        if loop.reference_zero_shot:
            react = PromptSettings(style="react", max_observation_chars=self.prompt.max_observation_chars)
            policies["zero-shot"] = lambda: self._student(None, s.eval_temperature, react)
        results = {}
        for name, policy in policies.items():
            out = self.dir / "final" / f"reference_{name}"
            if not (out / "summary.json").exists():
                self.on_stage(f"reference · {name} on {env.test_split}")
            summary, ran = self._rollout(out, env.test_split, policy, env.n_test)
            if ran:
                self._metric(None, "reference", reference=name, policy=summary["policy"], **_details(summary))
            results[name] = _headline(summary)
        return results

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            if self._tracker is not None:
                self._tracker.close()
                self._tracker = None

    def _run(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.dir / "config.yaml", yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        )
        per_iteration: list[list[Sample]] = []
        results: list[IterationResult] = []
        stopped = None
        try:
            for k in range(self.config.loop.iterations + 1):
                per_iteration.append(self.demo_samples() if k == 0 else self.correction_samples(k))
                self.train(k, per_iteration)
                results.append(IterationResult(k, self.validate(k)))
        except BudgetExceeded as exc:
            stopped = str(exc)
            log.warning("stopping: %s", exc)
        if not results:
            raise RuntimeError(f"the run stopped before any model was trained: {stopped}")
        best = max(results, key=_ranking)
        # BC and the best LEAP iteration always meet on the test split; one of them is `best`
        best_leap = max((r for r in results if r.iteration > 0), key=_ranking, default=None)
        tests = {0: self.test(0)}
        if best_leap is not None:
            tests[best_leap.iteration] = self.test(best_leap.iteration)
        references = self.references()
        summary = {
            "name": self.config.name,
            "best_iteration": best.iteration,
            "best_leap_iteration": best_leap.iteration if best_leap is not None else None,
            "stopped_early": stopped,
            "iterations": [
                {
                    "iteration": r.iteration,
                    "valid": _headline(r.valid),
                    "test": _headline(tests[r.iteration]) if r.iteration in tests else None,
                }
                for r in results
            ],
            "references": references,
        }
        atomic_write_json(self.dir / "summary.json", summary)
        return summary


def _ranking(result: IterationResult) -> tuple[float, float, float, int]:
    """Validation success, then score, then fewer actions, then the earlier iteration."""
    v = result.valid
    return (v["success_rate"], v["mean_score"], -v["mean_actions"], -result.iteration)


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("n_episodes", "success_rate", "mean_score", "mean_actions", "invalid_action_rate", "n_errored")
    return {k: summary[k] for k in keys}


def _details(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline plus the per-category table and, where the environment has them, score parts."""
    extra = {k: summary[k] for k in ("per_category", "score_parts") if k in summary}
    return {**_headline(summary), **extra}
