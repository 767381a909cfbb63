"""Batched rollouts: many episodes in flight at once.

In lockstep (local models, programmatic policies) the episodes advance together, one batched
policy call per step. A policy whose calls are requests to a server (``Policy.concurrent``)
instead gets one thread per episode in flight, and each episode takes its next step as soon as
its own decision arrives: the server batches the requests, and no episode waits for a step's
slowest reply. Either way a finished episode frees its slot for the next task at once, and a
crash inside an environment ends only that episode, which is marked as errored.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leap.envs.base import ActionSpace, Environment, StepResult
from leap.policy import AgentView, Decision, Policy, Turn

log = logging.getLogger(__name__)


@dataclass
class StepRecord:
    t: int
    observation: str
    candidates: dict[str, Any]
    action: str
    reason: str
    raw: str
    prompt_sha: str | None
    valid: bool
    reward: float
    done: bool
    info: dict[str, Any]


@dataclass
class Episode:
    episode_id: str
    env: str
    task_id: str
    category: str
    task: str
    policy: str
    steps: list[StepRecord] = field(default_factory=list)
    success: bool = False
    score: float = 0.0
    error: str | None = None

    @property
    def n_actions(self) -> int:
        return len(self.steps)

    @property
    def n_invalid(self) -> int:
        return sum(not s.valid for s in self.steps)

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(n_actions=self.n_actions, n_invalid=self.n_invalid)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Episode:
        fields = {k: v for k, v in record.items() if k not in ("n_actions", "n_invalid", "steps")}
        return cls(**fields, steps=[StepRecord(**s) for s in record.get("steps", [])])


@dataclass
class _Slot:
    index: int
    env: Environment
    episode: Episode
    observation: str
    space: ActionSpace
    turns: list[Turn] = field(default_factory=list)


def _json_safe(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if isinstance(v, str | int | float | bool | list | dict | None)}


def _close_quietly(env: Environment) -> None:
    try:
        env.close()
    except Exception:  # best effort: the environment is being thrown away anyway
        log.debug("close failed", exc_info=True)


Outcome = tuple[Any, str | None]  # (value, error text)


def _attempt(fn: Callable[[], Any], what: str) -> Outcome:
    try:
        return fn(), None
    except Exception as exc:
        return None, f"{what}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


class _LockstepRunner:
    """Keeps up to ``batch_size`` episodes in flight; each ``tick`` is one batched policy call.

    Environments that declare ``parallel_calls`` (their work happens in other processes) are
    reset and stepped from a thread pool, so that their processes run side by side. Environments
    that implement ``prepare`` are told their next task as soon as they start an episode.
    Runners in several threads may share one ``pending`` list (tasks, last first; ``list.pop``
    and ``append`` are atomic), each then keeping one episode in flight.
    """

    def __init__(
        self,
        make_env: Callable[[], Environment],
        task_ids: Sequence[str],
        policy: Policy,
        horizon: int | None,
        batch_size: int,
        on_end: Callable[[int, Episode], None],
        pending: list[tuple[int, str]] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.make_env, self.policy, self.horizon, self.batch_size = make_env, policy, horizon, batch_size
        self.pending = list(enumerate(task_ids))[::-1] if pending is None else pending
        self.shared = pending is not None
        self.on_end = on_end
        self.slots: dict[int, _Slot] = {}
        self.idle_envs: list[Environment] = []
        #: the task each preparing environment will run next, by id(env)
        self.reserved: dict[int, tuple[int, str]] = {}
        self.n_steps = 0
        self._threads: ThreadPoolExecutor | None = None

    def _map(self, calls: list[tuple[Callable[[], Any], str]], parallel: bool) -> list[Outcome]:
        if parallel and len(calls) > 1:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(max_workers=min(self.batch_size, 32))
            return list(self._threads.map(lambda c: _attempt(*c), calls))
        return [_attempt(*c) for c in calls]

    @staticmethod
    def _parallel(slots: list[_Slot]) -> bool:
        return any(s.env.parallel_calls for s in slots)

    def _end(self, slot: _Slot, error: str | None = None) -> None:
        """Finish an episode. An environment that failed is closed and never reused."""
        del self.slots[slot.index]
        if error is None:
            self.idle_envs.append(slot.env)
        else:
            log.warning("episode %s ended by an error: %s", slot.episode.episode_id, error.splitlines()[0])
            slot.episode.error = error
            job = self.reserved.pop(id(slot.env), None)
            if job is not None:
                self.pending.append(job)
            _close_quietly(slot.env)
        self.on_end(slot.index, slot.episode)

    def _next_job(self) -> tuple[Environment, tuple[int, str]] | None:
        for k, env in enumerate(self.idle_envs):
            job = self.reserved.pop(id(env), None)
            if job is not None:
                del self.idle_envs[k]
                return env, job
        try:
            job = self.pending.pop()  # another thread may have taken the last one
        except IndexError:
            return None
        env = self.idle_envs.pop() if self.idle_envs else self.make_env()
        return env, job

    def _reserve_next(self, env: Environment) -> None:
        # a runner that shares its tasks keeps none back from the others
        if self.shared or not self.pending or type(env).prepare is Environment.prepare:
            return
        job = self.pending.pop()
        self.reserved[id(env)] = job
        try:
            env.prepare(job[1])
        except Exception:  # only a hint: the reset will load the task anyway
            log.debug("prepare failed", exc_info=True)

    def fill(self) -> None:
        """Start episodes until the batch is full or no task is left (a failed start frees its
        slot for the next task at once)."""
        while True:
            starting: list[_Slot] = []
            while len(self.slots) < self.batch_size and (job := self._next_job()) is not None:
                env, (index, task_id) = job
                slot = _Slot(
                    index,
                    env,
                    Episode(task_id, env.name, task_id, "", "", self.policy.name),
                    "",
                    ActionSpace(),
                )
                self.slots[index] = slot
                starting.append(slot)
            if not starting:
                return
            calls = [(lambda s=s: self._start(s), "reset") for s in starting]
            for slot, (_, error) in zip(starting, self._map(calls, self._parallel(starting)), strict=True):
                if error is not None:
                    self._end(slot, error)
                else:
                    self._reserve_next(slot.env)

    @staticmethod
    def _start(slot: _Slot) -> None:
        task_id = slot.episode.task_id
        slot.episode.category = slot.env.category(task_id)
        slot.observation = slot.env.reset(task_id).observation
        slot.episode.task = slot.env.task
        slot.space = slot.env.action_space()

    def tick(self) -> None:
        """One batched policy call for every running episode, then one step of each."""
        slots = [self.slots[index] for index in sorted(self.slots)]
        parallel = self._parallel(slots)
        privileged: list[Outcome] = [(None, None)] * len(slots)
        if self.policy.privileged:
            if self.policy.needs_plan:  # the plain call, which every environment supports
                calls = [(s.env.privileged_state, "privileged_state") for s in slots]
            else:
                calls = [(lambda s=s: s.env.privileged_state(plan=False), "privileged_state") for s in slots]
            privileged = self._map(calls, parallel)
        live: list[_Slot] = []
        views: list[AgentView] = []
        for slot, (state, error) in zip(slots, privileged, strict=True):
            if error is not None:
                self._end(slot, error)
                continue
            live.append(slot)
            views.append(
                AgentView(
                    slot.episode.episode_id,
                    slot.episode.task,
                    slot.observation,
                    slot.space,
                    tuple(slot.turns),
                    state,
                )
            )
        if not live:
            return
        decisions = self.policy.act(views)
        if len(decisions) != len(views):
            raise RuntimeError(
                f"{self.policy.name} returned {len(decisions)} decisions for {len(views)} views"
            )
        calls = [
            (lambda s=s, d=d: s.env.step(d.action), f"step {len(s.episode.steps)}")
            for s, d in zip(live, decisions, strict=True)
        ]
        results = self._map(calls, parallel)
        for slot, decision, (result, error) in zip(live, decisions, results, strict=True):
            if error is not None:
                self._end(slot, error)
            else:
                self._record(slot, decision, result)

    def _record(self, slot: _Slot, decision: Decision, result: StepResult) -> None:
        ep = slot.episode
        ep.steps.append(
            StepRecord(
                t=len(ep.steps),
                observation=slot.observation,
                candidates=slot.space.to_record(),
                action=decision.action,
                reason=decision.reason,
                raw=decision.raw,
                prompt_sha=decision.prompt_sha,
                valid=slot.space.is_valid(decision.action),
                reward=result.reward,
                done=result.done,
                info=_json_safe(result.info),
            )
        )
        slot.turns.append(Turn(slot.observation, decision.reason, decision.action))
        ep.success, ep.score = result.success, result.reward
        self.n_steps += 1
        if result.done or len(ep.steps) >= (self.horizon or slot.env.horizon):
            self._end(slot)
            return
        slot.observation = result.observation
        try:
            slot.space = slot.env.action_space()
        except Exception as exc:
            self._end(slot, f"action_space: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        for env in self.idle_envs:
            _close_quietly(env)
        self.idle_envs.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None


def _run_independently(
    make_env: Callable[[], Environment],
    task_ids: Sequence[str],
    policy: Policy,
    horizon: int | None,
    workers: int,
    on_end: Callable[[int, Episode], None],
    on_steps: Callable[[int], None],
) -> None:
    """Up to ``workers`` episodes in flight, each advanced by a thread of its own that takes the
    next task when its episode ends. The first error raised in a thread (a policy that fails,
    not an environment: that ends only its episode) stops the others after their current step
    and is raised here."""
    pending = list(enumerate(task_ids))[::-1]
    lock, stop = threading.Lock(), threading.Event()

    def ended(index: int, episode: Episode) -> None:
        with lock:
            on_end(index, episode)

    def work() -> None:
        runner = _LockstepRunner(make_env, (), policy, horizon, 1, ended, pending=pending)
        try:
            runner.fill()
            while runner.slots and not stop.is_set():
                before = runner.n_steps
                runner.tick()
                with lock:
                    on_steps(runner.n_steps - before)
                runner.fill()
        finally:
            runner.close()

    n = min(workers, len(task_ids))
    with ThreadPoolExecutor(max_workers=max(n, 1), thread_name_prefix="episode") as pool:
        futures = [pool.submit(work) for _ in range(n)]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            stop.set()  # also on Ctrl-C: every thread ends after its current step
        for future in futures:
            future.result()


def run_episodes(
    make_env: Callable[[], Environment],
    task_ids: Sequence[str],
    policy: Policy,
    *,
    horizon: int | None = None,
    batch_size: int = 16,
    on_episode: Callable[[Episode], None] | None = None,
    show_progress: bool = True,
    label: str = "rollout",
    independent: bool | None = None,
) -> list[Episode]:
    """Run one episode per task id, ``batch_size`` at a time, and return them in task order.

    ``on_episode`` is called as each episode finishes (to append it to a JSONL file, say).
    ``independent``: advance each episode on its own (one thread each) rather than in lockstep;
    by default where the policy is ``concurrent`` (a model on a server).
    """
    if independent is None:
        independent = policy.concurrent
    finished: dict[int, Episode] = {}
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes · {task.fields[steps]} steps"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        bar = progress.add_task(label, total=len(task_ids), steps=0)

        def on_end(index: int, episode: Episode) -> None:
            finished[index] = episode
            if on_episode is not None:
                on_episode(episode)
            progress.advance(bar)

        if independent and batch_size > 1:
            steps = [0]

            def on_steps(n: int) -> None:
                steps[0] += n
                progress.update(bar, steps=steps[0])

            _run_independently(make_env, task_ids, policy, horizon, batch_size, on_end, on_steps)
            return [finished[i] for i in range(len(task_ids))]
        runner = _LockstepRunner(make_env, task_ids, policy, horizon, batch_size, on_end)
        try:
            runner.fill()
            while runner.slots:
                runner.tick()
                progress.update(bar, steps=runner.n_steps)
                runner.fill()
        finally:
            runner.close()
    return [finished[i] for i in range(len(task_ids))]
