"""Hook admission: which Hooks are in force, and why the others are not.

One place, used by file mode, cluster mode and ``khook validate``, so a Hook gets the same
verdict on every path. Four steps, cheapest first; a Hook that fails one is not in force, with
the reason its ``Ready`` condition carries:

1. **shape** (:func:`khook.core.hooks.read_hook`): every field, with its path
   -> ``InvalidConfiguration``;
2. **agent policy** (:class:`khook.core.tenancy.AgentPolicy`): may this namespace call those
   agents -> ``AgentNotAllowed``;
3. **quota**: at most ``max_hooks_per_namespace`` Hooks in force per namespace, the oldest
   -> ``TooManyHooks``. A Hook over the quota is never compiled nor rendered;
4. **prompts**: compiled (-> ``InvalidConfiguration``), then the injected ``prompt_check``
   renders them in the sandbox (-> ``PromptRenderFailed``).

Compilations and checks are cached by prompt text, so ten thousand copies of a Hook cost one.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from khook.core.hooks import (
    Compiler,
    Hook,
    HookDraft,
    HookInvalid,
    Reason,
    hook_identity,
    read_hook,
)
from khook.core.lru import BoundedLRU
from khook.core.prompt import PromptError, PromptTemplate, compile_prompt
from khook.core.tenancy import (
    DEFAULT_MAX_HOOKS_PER_NAMESPACE,
    AgentPolicy,
    in_quota,
    quota_order,
    quota_problem,
)
from khook.settings import Settings

# The event type and the compiled template -> a problem, or None when the prompt renders.
PromptCheck = Callable[[str, PromptTemplate], "str | None"]
Verdict = Hook | HookInvalid
CACHE_SIZE = 1024  # distinct prompt texts remembered (compiled templates and check verdicts)
_PROBLEM_LIMIT = 2000  # characters of one problem reported by a prompt check


def policy_from_settings(settings: Settings) -> AgentPolicy:
    """The agent policy the settings describe; a PolicyError (a ValueError) says what is wrong
    with KHOOK_AGENT_NAMESPACES or KHOOK_AGENT_GRANTS."""
    return AgentPolicy.build(
        settings.control_namespace, settings.agent_namespaces, settings.agent_grants
    )


@dataclass(frozen=True)
class Reading:
    """A Hook document after the shape and agent-policy steps."""

    namespace: str
    name: str
    order: tuple[str, str]  # its place in its namespace's quota queue
    draft: HookDraft | None  # None when ``invalid`` says why it is not in force
    invalid: HookInvalid | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Failed:
    message: str


class Admission:
    """Decides, for a set of Hook documents, which are in force."""

    def __init__(
        self,
        *,
        known_types: frozenset[str],
        control_namespace: str,
        policy: AgentPolicy | None = None,
        max_hooks_per_namespace: int = DEFAULT_MAX_HOOKS_PER_NAMESPACE,
        prompt_check: PromptCheck | None = None,
        compiler: Compiler = compile_prompt,
        cache_size: int = CACHE_SIZE,
        check_workers: int = 1,
    ) -> None:
        """``check_workers``: how many distinct prompts are checked at once (the prompt check
        waits on the sandbox's workers; pass their number)."""
        self.known_types = known_types
        self.control_namespace = control_namespace
        self.policy = policy or AgentPolicy(control_namespace)
        self.max_hooks_per_namespace = max_hooks_per_namespace
        self._prompt_check = prompt_check
        self._compiler = compiler
        self._compiled: BoundedLRU[str, PromptTemplate | _Failed] = BoundedLRU(cache_size)
        self._checked: BoundedLRU[tuple[str, str], _Failed | bool] = BoundedLRU(cache_size)
        self._check_workers = max(1, check_workers)

    # ---- steps 1 and 2 ----------------------------------------------------------------

    def read(self, body: Any, origin: str = "", default_namespace: str = "default") -> Reading:
        """Shape and agent policy: cheap, no prompt is compiled unless the shape is wrong
        (then every problem is reported at once)."""
        namespace, name = hook_identity(body, default_namespace)
        order = quota_order(None, name)  # only a draft is ranked, by its creationTimestamp
        try:
            draft = read_hook(
                body,
                known_types=self.known_types,
                control_namespace=self.control_namespace,
                default_namespace=default_namespace,
                origin=origin,
                compiler=self._compile,
            )
        except HookInvalid as exc:
            return Reading(namespace, name, order, None, exc)
        refused = self.policy.check_agents(
            draft.namespace,
            ((c.agent_field, c.agent.namespace) for c in draft.configurations if c.agent_field),
        )
        if refused:
            return Reading(
                namespace, name, order, None, draft.invalid(refused, Reason.AGENT_NOT_ALLOWED)
            )
        return Reading(namespace, name, quota_order(draft.created, name), draft)

    # ---- step 3 -------------------------------------------------------------------------

    def over_quota(self, reading: Reading) -> HookInvalid:
        problem = quota_problem(reading.namespace, self.max_hooks_per_namespace)
        origin = reading.draft.origin if reading.draft else ""
        return HookInvalid(
            reading.namespace, reading.name, [problem], Reason.TOO_MANY_HOOKS, origin
        )

    # ---- step 4 -------------------------------------------------------------------------

    def complete(self, draft: HookDraft) -> Verdict:
        """Compile the prompts, then check each renders; the Hook, or why it is not in force."""
        return self.complete_all([draft])[0]

    def complete_all(self, drafts: Sequence[HookDraft]) -> list[Verdict]:
        """:meth:`complete` for many Hooks: each distinct prompt is checked once, up to
        ``check_workers`` at a time."""
        compiled: list[Verdict] = []
        for draft in drafts:
            try:
                compiled.append(draft.compile(self._compile))
            except HookInvalid as exc:
                compiled.append(exc)
        prompts = {
            (c.event_type, c.prompt.source): c.prompt
            for hook in compiled
            if isinstance(hook, Hook)
            for c in hook.configurations
        }
        found = self._check_all(prompts)
        verdicts: list[Verdict] = []
        for draft, hook in zip(drafts, compiled, strict=True):
            if isinstance(hook, HookInvalid):
                verdicts.append(hook)
                continue
            problems = [
                f"{c.path}.prompt: {problem}"
                for c, config in zip(draft.configurations, hook.configurations, strict=True)
                if (problem := found[(config.event_type, config.prompt.source)]) is not None
            ]
            verdicts.append(
                draft.invalid(problems, Reason.PROMPT_RENDER_FAILED) if problems else hook
            )
        return verdicts

    def _check_all(
        self, prompts: Mapping[tuple[str, str], PromptTemplate]
    ) -> dict[tuple[str, str], str | None]:
        keys = list(prompts)
        if self._prompt_check is None or self._check_workers == 1 or len(keys) < 2:
            return {key: self._check(key[0], prompts[key]) for key in keys}
        with ThreadPoolExecutor(self._check_workers, thread_name_prefix="khook-check") as pool:
            found = pool.map(lambda key: self._check(key[0], prompts[key]), keys)
            return dict(zip(keys, found, strict=True))

    def verdict(self, reading: Reading, placed: bool) -> Verdict:
        """A read Hook's verdict, given whether it has a place in its namespace's quota."""
        if reading.draft is None:
            assert reading.invalid is not None
            return reading.invalid
        return self.complete(reading.draft) if placed else self.over_quota(reading)

    def admit(self, readings: Sequence[Reading]) -> list[Verdict]:
        """Every Hook's verdict, in the order given, the quota applied per namespace."""
        orders: dict[str, dict[str, tuple[str, str]]] = {}
        for r in readings:
            if r.draft is not None:
                orders.setdefault(r.namespace, {})[r.key] = r.order
        placed = set[str]().union(
            *(in_quota(o, self.max_hooks_per_namespace) for o in orders.values())
        )
        chosen = [r.draft for r in readings if r.draft is not None and r.key in placed]
        done = iter(self.complete_all(chosen))
        return [
            next(done) if r.draft is not None and r.key in placed else self.verdict(r, False)
            for r in readings
        ]

    # ---- the caches ---------------------------------------------------------------------

    def _compile(self, source: str) -> PromptTemplate:
        cached = self._compiled.get(source)
        if cached is None:
            try:
                cached = self._compiler(source)
            except PromptError as exc:
                cached = _Failed(str(exc))
            except Exception as exc:  # a hostile template costs its Hook, never the caller
                cached = _Failed(
                    f"prompt cannot be compiled: {type(exc).__name__}: {exc}"[:_PROBLEM_LIMIT]
                )
            self._compiled.put(source, cached)
        if isinstance(cached, _Failed):
            raise PromptError(cached.message)
        return cached

    def _check(self, event_type: str, template: PromptTemplate) -> str | None:
        if self._prompt_check is None:
            return None
        key = (event_type, template.source)
        cached = self._checked.get(key)
        if cached is not None:
            return cached.message if isinstance(cached, _Failed) else None
        try:
            problem = self._prompt_check(event_type, template)
        except Exception as exc:  # the checker failed, not the prompt: not remembered
            return f"the prompt could not be checked: {type(exc).__name__}: {exc}"[:_PROBLEM_LIMIT]
        self._checked.put(key, _Failed(str(problem)[:_PROBLEM_LIMIT]) if problem else True)
        return str(problem)[:_PROBLEM_LIMIT] if problem else None


class Ranking:
    """The Hooks that count against the quota, per namespace in quota order, kept up to date
    one Hook at a time (a watch event): O(Hooks in the namespace) per update, so a namespace
    filling up with thousands of Hooks costs no quadratic work."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ranked: dict[str, list[tuple[tuple[str, str], str]]] = {}
        self._where: dict[str, tuple[str, tuple[str, str]]] = {}  # key -> (namespace, order)
        self._placed: dict[str, frozenset[str]] = {}

    def update(self, key: str, namespace: str, order: tuple[str, str] | None) -> set[str]:
        """Rank a Hook (``order``) or take it out (None); the keys whose place changed."""
        before = self._placed.get(namespace, frozenset())
        old = self._where.pop(key, None)
        if old is not None:
            ranked = self._ranked[old[0]]
            index = bisect.bisect_left(ranked, (old[1], key))
            if index < len(ranked) and ranked[index] == (old[1], key):
                del ranked[index]
        if order is not None:
            bisect.insort(self._ranked.setdefault(namespace, []), (order, key))
            self._where[key] = (namespace, order)
        ranked = self._ranked.get(namespace, [])
        after = frozenset(k for _, k in ranked[: self._limit])
        if ranked:
            self._placed[namespace] = after
        else:
            self._placed.pop(namespace, None)
            self._ranked.pop(namespace, None)
        return set(before ^ after)

    def placed(self, key: str) -> bool:
        where = self._where.get(key)
        return where is not None and key in self._placed.get(where[0], frozenset())
