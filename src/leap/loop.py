"""The LEAP loop, staged and resumable.

    iteration 0: demonstrations -> samples D_0 -> train pi_0 -> evaluate on validation
    iteration k: roll out pi_{k-1} on fresh training tasks -> keep the failed episodes -> the
                 privileged teacher corrects them -> select the samples D_k -> train pi_k on
                 D_0 ∪ ... ∪ D_k -> evaluate on validation
    finally:     pick the best iteration on validation -> test BC and the best LEAP iteration

``LeapRun.run`` reads as exactly that; each stage below is named after what it produces. Every
stage writes its output atomically to the path ``RunLayout`` gives it and is skipped when that
output exists, so ``leap run CONFIG`` after a kill resumes at the first unfinished stage.
Rollouts also resume mid-way (finished episodes are kept), and teacher requests are cached on
disk by content, so no request is paid for twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from leap.builders import RunParts
from leap.config import RunConfig
from leap.data import Sample, aggregate, export, load_samples, make_sample
from leap.evaluate import NOT_PRIVILEGED, evaluate, task_successes
from leap.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from leap.layout import rollout_done
from leap.models.registry import resolve_model_path
from leap.policy import Policy
from leap.rollout import Episode
from leap.stats import paired_difference
from leap.teachers import BudgetExceeded, EpisodeCorrection, StepCorrection, Teacher
from leap.teachers.programmatic import ProgrammaticTeacher
from leap.teachers.replay import ReplayMismatch
from leap.teachers.selection import select_steps
from leap.teachers.takeover import take_over, takeover_step
from leap.tracking import Tracker
from leap.train import train_adapter

log = logging.getLogger(__name__)


@dataclass
class IterationResult:
    iteration: int
    valid: dict[str, Any]


class LeapRun:
    """One run directory and the stages that fill it."""

    def __init__(
        self,
        config: RunConfig,
        *,
        on_stage: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.layout = config.layout
        self.parts = RunParts(config, self.layout)
        self.on_stage = on_stage or (lambda message: log.info("%s", message))
        #: a line about a finished stage: where it ran and how fast
        self.on_note = on_note or (lambda message: log.info("%s", message))
        self._tracker: Tracker | None = None

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            self.parts.close()  # a served student's server ends with the run, however it ends
            if self._tracker is not None:
                self._tracker.close()
                self._tracker = None

    def _run(self) -> dict[str, Any]:
        self.config.check_resume()
        self.parts.check_splits()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        atomic_write_text(self.layout.config, config)
        datasets: list[list[Sample]] = []  # D_0, D_1, ...
        results: list[IterationResult] = []
        stopped = None
        try:
            for k in range(self.config.loop.iterations + 1):
                if self.layout.samples(k).is_file():
                    samples = load_samples([self.layout.samples(k)])  # D_k, made before a resume
                elif k == 0:
                    samples = self.demonstration_samples()
                else:
                    episodes = self.student_rollouts(k)  # roll out pi_{k-1}
                    failed = self.failures(episodes)
                    corrections = self.corrections(k, failed)  # the privileged teacher corrects
                    samples = self.corrected_samples(k, episodes, corrections)
                datasets.append(samples)
                self.train(k, datasets)  # pi_k on D_0 ∪ ... ∪ D_k
                results.append(IterationResult(k, self.validate(k)))
        except BudgetExceeded as exc:
            stopped = str(exc)
            log.warning("stopping: %s", exc)
        if not results:
            raise RuntimeError(f"the run stopped before any model was trained: {stopped}")
        return self.finish(results, stopped)

    def finish(self, results: list[IterationResult], stopped: str | None) -> dict[str, Any]:
        """Choose the best iteration on validation, test it beside BC, add the references."""
        best = max(results, key=_ranking)
        # BC and the best LEAP iteration always meet on the test split; one of them is `best`
        best_leap = max((r for r in results if r.iteration > 0), key=_ranking, default=None)
        tests = {0: self.test(0)}
        comparisons, matched = {}, None
        if self.config.loop.test_iterations == "all":
            tests.update((r.iteration, self.test(r.iteration)) for r in results)
        if best_leap is not None:
            k = best_leap.iteration
            tests[k] = self.test(k)
            comparisons["bc"] = self.compare(self.layout.test(0), k, "BC (iteration 0)")
            if self.config.loop.matched_bc:
                matched = self.matched_bc(k)
                comparisons["matched_bc"] = self.compare(self.layout.matched_bc_test(), k, matched["label"])
        references = self.references()
        if best_leap is not None:
            # is the student better than its teacher acting without privilege?
            for name in self.unprivileged_references(references):
                label = f"{name}{NOT_PRIVILEGED}"
                comparisons[f"reference_{name}"] = self.compare(self.layout.reference(name), k, label)
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
            "matched_bc": matched,
            "comparisons": comparisons,
            "references": references,
        }
        atomic_write_json(self.layout.summary, summary)
        return summary

    # -- stages: data ----------------------------------------------------------------------------
    def demonstrations(self) -> list[Episode]:
        """Iteration 0's episodes: an expert's rollouts, or logs from a JSONL file."""
        d = self.config.demos
        if d.source == "file":
            if d.path is None or not d.path.is_file():
                raise FileNotFoundError(f"demos.path: no such file {d.path}")
            return [Episode.from_record(r) for r in read_jsonl(d.path)][: d.n_episodes]
        expert = self.parts.demonstrator()
        out = self.layout.demos
        self._rollout(out, self.config.env.train_split, lambda: expert, d.n_episodes)
        return [Episode.from_record(r) for r in read_jsonl(out / "episodes.jsonl")]

    def demonstration_samples(self) -> list[Sample]:
        """D_0: every step of the successful demonstrations."""
        self.on_stage("iteration 0 · demonstrations")
        episodes, samples = self._demo_samples(self.demonstrations())
        atomic_write_jsonl(self.layout.samples(0), [s.to_record() for s in samples])
        self._metric(0, "demos", episodes=len(episodes), samples=len(samples))
        return samples

    def _demo_samples(self, demonstrations: list[Episode]) -> tuple[list[Episode], list[Sample]]:
        """The successful demonstrations (their reasons labelled where the config asks) and a
        sample for each of their steps."""
        episodes = [e for e in demonstrations if e.success and e.error is None]
        if self.config.demos.reasons == "llm":
            from leap.teachers.labelling import label_reasons

            episodes = label_reasons(episodes, self.parts.teacher_model(), self.config.student.prompt)
        teacher, prompt = f"demo:{self.config.demos.expert}", self.config.student.prompt
        samples = [
            make_sample(e, t, iteration=0, teacher=teacher, reason=s.reason, action=s.action, settings=prompt)
            for e in episodes
            for t, s in enumerate(e.steps)
        ]
        return episodes, samples

    def student_rollouts(self, k: int) -> list[Episode]:
        """pi_{k-1} on the next ``rollouts_per_iteration`` training tasks (fresh every iteration)."""
        n = self.config.loop.rollouts_per_iteration
        offset = (k - 1) * n
        split = self.config.env.train_split
        out = self.layout.rollout(k)
        if not rollout_done(out):
            self.on_stage(f"iteration {k} · student rollouts on {split} tasks {offset}..{offset + n - 1}")
        temperature = self.config.student.temperature
        summary, timing = self._rollout(
            out, split, lambda: self.parts.student(self.layout.adapter(k - 1), temperature), n, offset
        )
        if timing:
            self._metric(k, "rollout", **_headline(summary), **timing)
        return [Episode.from_record(r) for r in read_jsonl(out / "episodes.jsonl")]

    def failures(self, episodes: list[Episode]) -> list[Episode]:
        """The episodes the teacher corrects: those scoring below the failure threshold."""
        threshold = self.config.loop.failure_threshold
        return [e for e in episodes if e.score < threshold and e.error is None and e.steps]

    def teacher(self, k: int) -> Teacher:
        return self.parts.teacher(k)

    def corrections(self, k: int, failed: list[Episode]) -> list[EpisodeCorrection]:
        """The privileged teacher's corrections of the failed episodes, and what they cost."""
        path = self.layout.corrections(k)
        if path.exists():
            return [EpisodeCorrection.from_record(r) for r in read_jsonl(path)]
        self.on_stage(f"iteration {k} · teacher corrects {len(failed)} failed episodes")
        teacher = self.teacher(k)
        before = teacher.usage()
        corrections = teacher.correct(failed, self.parts.make_env)
        atomic_write_jsonl(path, [c.to_record() for c in corrections])
        stats = teacher.report(corrections, before)
        atomic_write_json(self.layout.teacher_stats(k), stats)
        self._metric(k, "correct", **stats)
        return corrections

    def corrected_samples(
        self, k: int, episodes: list[Episode], corrections: list[EpisodeCorrection]
    ) -> list[Sample]:
        """D_k: the corrected steps selected for training, each on the student's own history."""
        if self.config.loop.corrections == "takeover":
            return self.takeover_samples(k, episodes, corrections)
        by_id = {e.episode_id: e for e in episodes}
        loop = self.config.loop
        samples = []
        dropped: Counter[str] = Counter()
        for correction in corrections:
            episode = by_id[correction.episode_id]
            kept, skipped = select_steps(
                correction, episode, steps=loop.correction_steps, max_repeats=loop.max_repeats_per_episode
            )
            dropped.update(skipped)
            replaced = {s.step: episode.steps[s.step].raw for s in kept}
            samples += self._on_history(k, episode, correction.teacher, kept, replaced)
        return self._selected(k, samples, dropped)

    def _on_history(
        self,
        k: int,
        episode: Episode,
        teacher: str,
        steps: list[StepCorrection],
        replaced: dict[int, str],
    ) -> list[Sample]:
        """Samples of the corrected ``steps`` on ``episode``'s history; ``replaced`` holds, by step,
        the student's reply that a correction replaces (DPO's rejected answer)."""
        return [
            make_sample(
                episode,
                s.step,
                iteration=k,
                teacher=teacher,
                reason=s.reason,
                action=s.action,
                settings=self.config.student.prompt,
                rejected=replaced.get(s.step),
                leaked=bool(s.leaks),
            )
            for s in steps
        ]

    def _selected(self, k: int, samples: list[Sample], dropped: Counter[str], **counts: int) -> list[Sample]:
        """Record D_k: its size and what was not trained on, by cause."""
        if dropped:
            log.info("iteration %d: corrected steps not trained on: %s", k, dict(dropped))
        self._metric(k, "select", samples=len(samples), **counts, dropped=dict(dropped))
        atomic_write_jsonl(self.layout.samples(k), [s.to_record() for s in samples])
        return samples

    def takeover_samples(
        self, k: int, episodes: list[Episode], corrections: list[EpisodeCorrection]
    ) -> list[Sample]:
        """D_k from take-over corrections: each failed episode up to a step between the student's
        first error and its end, finished by the teacher; every teacher step (validated and
        audited) is a sample."""
        teacher = self.teacher(k)
        if not isinstance(teacher, ProgrammaticTeacher):
            raise ValueError("loop.corrections: takeover needs a programmatic teacher (teacher.kind)")
        by_id = {e.episode_id: e for e in episodes}
        starts: dict[str, int] = {}
        takeovers: list[Episode] = []
        dropped: Counter[str] = Counter()
        for correction in corrections:
            episode = by_id[correction.episode_id]
            t = takeover_step(correction, episode, self.config.seed)
            if t is None:
                dropped["agrees_with_student"] += 1
                continue
            try:
                takeover = take_over(episode, t, teacher.policy, self.parts.make_env, self.config.env.horizon)
            except ReplayMismatch as exc:
                log.warning("%s", exc)
                dropped["replay_mismatch"] += 1
                continue
            starts[takeover.episode_id] = t
            takeovers.append(takeover)
        atomic_write_jsonl(self.layout.takeovers(k), [e.to_record() for e in takeovers])
        samples = []
        for takeover, checked in zip(takeovers, teacher.correct(takeovers, self.parts.make_env), strict=True):
            start = starts[takeover.episode_id]
            student = by_id[takeover.episode_id.removesuffix("+takeover")].steps[start]
            dropped.update(checked.rejections)
            steps = [s for s in checked.steps if s.step >= start]
            samples += self._on_history(k, takeover, checked.teacher, steps, {start: student.raw})
        return self._selected(k, samples, dropped, takeovers=len(takeovers))

    # -- stages: models --------------------------------------------------------------------------
    def train(self, k: int, datasets: list[list[Sample]]) -> Path:
        """pi_k: a LoRA adapter trained on the aggregate D_0 ∪ ... ∪ D_k."""
        adapter = self.layout.adapter(k)
        if self.layout.adapter_done(k):
            return adapter
        loop = self.config.loop
        settings = self.parts.train_settings(k)
        union = aggregate(datasets, loop.cap_per_iteration)
        if not union:
            raise RuntimeError(
                f"iteration {k}: no training samples "
                "(did every demonstration fail? check env.horizon and demos)"
            )
        data_file = self.layout.train_file(k, self.config.train.rule)
        rows = export(union, settings.rule, data_file)
        self.on_stage(f"iteration {k} · {settings.rule} on {rows} rows (iterations 0..{k})")
        init = self.layout.adapter(k - 1) if k > 0 and loop.init == "previous" else None
        metrics = train_adapter(
            resolve_model_path(self.config.student.model),
            data_file,
            adapter,
            settings,
            init_adapter=init,
            seed=self.config.seed + k,
        )
        self._metric(
            k,
            "train",
            rows=rows,
            samples=len(union),
            **{
                key: metrics[key]
                for key in ("steps", "train_loss", "train_runtime_s", *TRAIN_SPEED)
                if key in metrics
            },
            loss_curve=metrics["loss_curve"],
        )
        self.on_note(train_note(metrics))
        return adapter

    def validate(self, k: int) -> dict[str, Any]:
        env = self.config.env
        return self._evaluate_adapter(k, self.layout.valid(k), env.valid_split, env.n_valid, "valid")

    def test(self, k: int) -> dict[str, Any]:
        env = self.config.env
        return self._evaluate_adapter(k, self.layout.test(k), env.test_split, env.n_test, "test")

    def compare(self, baseline: Path, k: int, label: str) -> dict[str, Any]:
        """Iteration ``k`` against a baseline on the same test tasks: the paired difference in
        success with its bootstrap 95 % interval."""
        test = self.layout.test(k) / "episodes.jsonl"
        result = paired_difference(
            task_successes(baseline / "episodes.jsonl"), task_successes(test), seed=self.config.seed
        )
        result = {"against": label, "leap_iteration": k, **result}
        logged = self.layout.metrics.is_file() and any(
            row.get("stage") == "compare" and all(row.get(key) == value for key, value in result.items())
            for row in read_jsonl(self.layout.metrics)
        )
        if not logged:  # a resumed run that has nothing left to do changes nothing
            self._metric(k, "compare", **result)
        return result

    def matched_bc(self, k: int) -> dict[str, Any]:
        """Behaviour cloning with LEAP's budget up to iteration ``k``: as many samples (more
        demonstrations of the same expert, on training tasks after D_0's) and as many optimizer
        steps, trained from the base model (or continued from BC's adapter for the steps after
        BC's: ``loop.matched_bc_init``) and tested on the same tasks."""
        layout, loop = self.layout, self.config.loop
        datasets = [load_samples([layout.samples(i)]) for i in range(k + 1)]
        budget_samples = len(aggregate(datasets, loop.cap_per_iteration))
        budget_steps = sum(
            json.loads((layout.adapter(i) / "train_metrics.json").read_text())["steps"] for i in range(k + 1)
        )
        root = layout.matched_bc
        adapter = root / "adapter"
        if not layout.matched_bc_done():
            samples = self._matched_demo_samples(datasets[0], budget_samples)
            from_bc = loop.matched_bc_init == "bc"
            # from BC's adapter, BC's own steps are already spent: train the rest of the budget
            bc_steps = json.loads((layout.adapter(0) / "train_metrics.json").read_text())["steps"]
            steps = budget_steps - bc_steps if from_bc else budget_steps
            if steps < 1:
                raise RuntimeError(f"budget-matched BC: LEAP iteration {k} trained no steps beyond BC's")
            settings = self.config.train.for_iteration(0).model_copy(update={"max_steps": steps})
            data_file = root / "train" / "sft.jsonl"
            rows = export(samples, "sft", data_file)
            start = "BC's adapter" if from_bc else "the base model"
            self.on_stage(f"budget-matched BC · sft on {rows} rows for {steps} steps from {start}")
            metrics = train_adapter(
                resolve_model_path(self.config.student.model),
                data_file,
                adapter,
                settings,
                init_adapter=layout.adapter(0) if from_bc else None,
                seed=self.config.seed + k if from_bc else self.config.seed,
            )
            self._metric(
                None,
                "matched_bc_train",
                rows=rows,
                samples=len(samples),
                budget_samples=budget_samples,
                leap_iteration=k,
                **{
                    key: metrics[key]
                    for key in ("train_loss", "train_runtime_s", *TRAIN_SPEED)
                    if key in metrics
                },
                # the budget: optimizer steps in all, BC's included where it starts from BC
                steps=metrics["steps"] + (bc_steps if from_bc else 0),
                init=loop.matched_bc_init,
                trained_steps=metrics["steps"],
            )
            self.on_note(train_note(metrics))
        out, env = layout.matched_bc_test(), self.config.env
        if not rollout_done(out):
            self.on_stage(f"budget-matched BC · test on {env.test_split}")
        temperature = self.config.student.eval_temperature
        student = partial(self.parts.student, adapter, temperature)
        summary, timing = self._rollout(out, env.test_split, student, env.n_test)
        label = f"BC, budget-matched ({budget_samples} samples, {budget_steps} steps)"
        if timing:
            self._metric(
                None, "matched_bc_test", label=label, leap_iteration=k, **_details(summary), **timing
            )
        return {"label": label, **_headline(summary)}

    def _matched_demo_samples(self, d0: list[Sample], budget: int) -> list[Sample]:
        """D_0 and the steps of further demonstrations, ``budget`` samples in all (fewer only
        when demonstrations come from a file that has no more)."""
        path = self.layout.matched_bc / "samples.jsonl"
        if path.is_file():
            return load_samples([path])
        samples = list(d0)
        d = self.config.demos
        if len(samples) < budget and d.source == "expert":
            per_episode = max(1.0, len(d0) / max(1, len({s.episode_id for s in d0})))
            offset, n = d.n_episodes, 0
            while len(samples) < budget and n < 10 * d.n_episodes:
                more = int((budget - len(samples)) / per_episode * 1.25) + 1
                out = self.layout.matched_bc / f"demos_{offset + n}"
                self._rollout(out, self.config.env.train_split, self.parts.demonstrator, more, offset + n)
                episodes = [Episode.from_record(r) for r in read_jsonl(out / "episodes.jsonl")]
                samples += self._demo_samples(episodes)[1]
                n += more
        samples = samples[:budget]
        atomic_write_jsonl(path, [s.to_record() for s in samples])
        return samples

    def references(self) -> dict[str, dict[str, Any]]:
        """Reference rows on the test split: the environment's experts (programmatic, cheap) and
        the untrained student with the instruction-only prompt, as the config asks."""
        env, loop = self.config.env, self.config.loop
        policies: dict[str, Callable[[], Policy]] = {}
        if loop.reference_experts:
            env_spec = self.parts.env
            policies.update((name, env_spec.expert_class(name)) for name in sorted(env_spec.experts))
        if loop.reference_zero_shot:
            temperature, react = self.config.student.eval_temperature, self.parts.zero_shot_prompt()
            policies["zero-shot"] = lambda: self.parts.student(None, temperature, react)
        results = {}
        for name, policy in policies.items():
            out = self.layout.reference(name)
            if not rollout_done(out):
                self.on_stage(f"reference · {name} on {env.test_split}")
            summary, timing = self._rollout(out, env.test_split, policy, env.n_test)
            if timing:
                self._metric(
                    None, "reference", reference=name, policy=summary["policy"], **_details(summary), **timing
                )
            results[name] = _headline(summary)
        return results

    def unprivileged_references(self, references: dict[str, Any]) -> list[str]:
        """The reference experts among ``references`` that act without the privileged state
        (household's searcher: the teacher without its privilege, the paper's ReAct row)."""
        spec = self.parts.env
        return [name for name in references if name in spec.experts and not spec.expert_privileged(name)]

    # -- helpers ---------------------------------------------------------------------------------
    def _evaluate_adapter(self, k: int, out: Path, split: str, n: int | None, stage: str) -> dict[str, Any]:
        if not rollout_done(out):
            self.on_stage(f"iteration {k} · {stage} on {split}")
        temperature = self.config.student.eval_temperature
        summary, timing = self._rollout(
            out, split, lambda: self.parts.student(self.layout.adapter(k), temperature), n
        )
        if timing:
            self._metric(k, stage, **_details(summary), **timing)
        return summary

    def _rollout(
        self, out: Path, split: str, policy: Callable[[], Policy], n: int | None, offset: int = 0
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """Run (or resume) a rollout into ``out``; returns its summary and, if it ran now, its
        timing (seconds, env steps/s: for metrics.jsonl, never the summary, which a resumed run
        must reproduce exactly); empty if it was already done.

        ``policy`` is a factory, so a finished stage never loads a model."""
        if rollout_done(out):
            return json.loads((out / "summary.json").read_text()), {}
        start = time.perf_counter()
        built = policy()
        summary = evaluate(
            self.config.env.name,
            split,
            built,
            n=n,
            offset=offset,
            out_dir=out,
            batch_size=self.config.student.batch_size,
            horizon=self.config.env.horizon,
            env_options=self.config.env.options,
            resume=True,
        )
        seconds = time.perf_counter() - start
        steps = round(summary["n_episodes"] * summary["mean_actions"])
        model = getattr(built, "model", None)
        where = f" on {model.describe()}" if model is not None else ""
        self.on_note(f"{summary['n_episodes']} episodes, {steps} env steps in {seconds:.0f} s{where}")
        return summary, {
            "seconds": round(seconds, 1),
            "env_steps_per_s": round(steps / max(seconds, 1e-9), 2),
        }

    def _metric(self, iteration: int | str | None, stage: str, **values: Any) -> None:
        if self._tracker is None:
            t = self.config.tracking
            self._tracker = Tracker(
                self.layout.root,
                tensorboard=t.tensorboard,
                wandb=t.wandb,
                wandb_project=t.wandb_project,
                wandb_mode=t.wandb_mode,
                name=self.config.name,
                config=self.config.model_dump(mode="json"),
            )
        self._tracker.log(iteration, stage, **values)


def _ranking(result: IterationResult) -> tuple[float, float, float, int]:
    """Validation success, then score, then fewer actions, then the earlier iteration."""
    v = result.valid
    return (v["success_rate"], v["mean_score"], -v["mean_actions"], -result.iteration)


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("n_episodes", "success_rate", "mean_score", "mean_actions", "invalid_action_rate", "n_errored")
    return {k: summary[k] for k in keys}


#: what a training stage records about its speed (``train_metrics.json``, ``metrics.jsonl``)
TRAIN_SPEED = ("device", "dtype", "attention", "engine", "tokens", "tokens_per_s", "seconds_per_step")


def train_note(metrics: dict[str, Any]) -> str:
    """One line on a finished training stage: where it ran and how fast."""
    where = " · ".join(str(metrics.get(key)) for key in ("device", "dtype", "attention"))
    line = f"{metrics['steps']} steps on {where}"
    if metrics.get("tokens_per_s"):
        line += f": {metrics['tokens_per_s']:,.0f} tokens/s, {metrics['seconds_per_step']:.2f} s/step"
    return line


def _details(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline plus the per-category table and, where the environment has them, score parts
    and the counts of mistakes by kind."""
    extra = {k: summary[k] for k in ("per_category", "score_parts", "mistakes") if k in summary}
    return {**_headline(summary), **extra}
