"""What every target shares: budgets per subscription and overall, and fail static.

* **Budgets.** A token bucket per subscription (``subscriptionBurst`` tokens,
  ``subscriptionPerHour`` refill) and a cap on actions across all targets per hour.
  With shards, each replica holds its share (owned partitions / partitions) of both, and
  a partition that moves takes its slice of each bucket along as it stands: see
  :meth:`Fleet.reshare` and :meth:`Fleet.hand_over`.
* **Fail static.** When more than ``breachShare`` of all targets (and more than
  ``minTargets``) are in breach at once, or the signal backend is failing for more than
  ``errorShare`` of them, the cause is likely shared — a region, a dependency, the
  monitoring itself — and acting target by target would amplify it. No target acts;
  an escalation is written once; acting resumes after ``healthyRounds`` full rounds of
  every target below both shares (the end is written to the audit log, so a restart
  knows whether an episode still holds and does not escalate it again). Never acting
  on an empty target set follows: with no targets there is nothing to act on.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from controller.audit.replay import FAIL_STATIC, FAIL_STATIC_HOLDS
from controller.config import BudgetSettings, FailStaticSettings
from controller.core.budget import HOUR, Bucket, window_count
from controller.model import VerdictState

_NOTHING = 1e-9  # a slice short by less than this is full (float sums)


@dataclass(frozen=True)
class HandOver:
    """What a replica leaves in a partition it lost (a ``budget`` line): the actions of the
    hour it spent beyond its new share, and for each subscription the tokens the
    partition's slice of its bucket lacks (the next owner's bucket does not get them)."""

    spent: list[tuple[datetime, str, str]] = field(default_factory=list)
    owed: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.spent or self.owed)


@dataclass(frozen=True)
class _Arrival:
    """A gained partition's slices as its log left them: what its last ``budget`` line
    says they lacked, when (None: no line, full), and the actions the log holds since."""

    at: datetime | None
    owed: dict[str, float]
    actions: list[tuple[datetime, str]]

    def lacking(self, piece: Bucket, now: datetime) -> dict[str, float]:
        """What each subscription's slice (``piece``, full) lacks now: the line's state,
        less a token for each action since (none below empty), refilled to ``now``."""
        slices = {
            key: replace(piece, tokens=piece.capacity - tokens, at=self.at)
            for key, tokens in self.owed.items()
        }
        for ts, key in sorted(self.actions):
            taken = slices.get(key, replace(piece, tokens=piece.capacity, at=ts)).take(ts)
            slices[key] = replace(taken, tokens=max(taken.tokens, 0.0))
        short = {}
        for key, bucket in slices.items():
            lacking = piece.capacity - bucket.refilled(now).tokens
            if lacking > _NOTHING:
                short[key] = lacking
        return short


class Fleet:
    """Shared by the reconcilers of one controller."""

    def __init__(
        self,
        budgets: BudgetSettings,
        fail_static: FailStaticSettings,
        targets: int = 0,
        arm_pressure: Callable[[], str | None] | None = None,
        on_release: Callable[[str, str, VerdictState, datetime], None] | None = None,
    ) -> None:
        # told (why it held, the target whose pass released it and its state, when) before
        # fail static lets go: the audit line that ends the episode (raising keeps it held)
        self._on_release = on_release
        self._arm_pressure = arm_pressure  # ARM's own word that writes are about to be throttled
        self._targets = targets  # how many there are: shares are of all, not of those seen
        self._budgets = budgets
        self._rule = fail_static
        self._buckets: dict[str, Bucket] = {}
        self._actions: deque[datetime] = deque()  # when actions ran, the last hour's
        # (target, when) of the actions counted: one replayed again (a partition this
        # replica owned before, gained back) is not counted twice
        self._counted: set[tuple[str, datetime]] = set()
        # with shards: (when, subscription, target) of every action counted, and those
        # already handed over with a partition lost (see hand_over)
        self._ledger: deque[tuple[datetime, str, str]] = deque()
        self._handed: set[tuple[datetime, str, str]] = set()
        self._unnamed = 0  # actions spent without a target: each an entry of its own
        self._states: dict[str, tuple[VerdictState, bool]] = {}  # target → (worst, failing)
        self._breaching = 0  # of _states, kept as it changes: a note costs the same for any fleet
        self._failing = 0
        self._noted: dict[str, datetime] = {}  # target → when it last reported
        self._reports: list[datetime] = []  # the values of _noted, sorted: who reported since
        self._breach_since: dict[str, datetime] = {}
        self.engaged: str | None = None  # why the fleet holds still
        # with shards, the share of the estate's partitions this replica owns: its
        # budgets are that share of the estate's, so all replicas together stay within it
        self.share = 1.0
        # with shards: the partitions that share is of (None until the first split), the
        # slices of buckets lost with a partition and not yet handed over, and the slices'
        # shortfalls a gained partition's log brought (when written, by subscription)
        self._owned: frozenset[int] | None = None
        self._partitions = 0
        self._leaving: dict[int, dict[str, Bucket]] = {}
        self._arriving: dict[int, _Arrival] = {}
        # buckets only replay has spent from (a gained partition's actions), never this
        # replica's own: unused when the partition is gained (see reshare)
        self._replayed: set[str] = set()
        self._healthy_passes = 0

    def _bucket(self, subscription: str) -> Bucket:
        b, share = self._budgets, self.share
        burst = b.subscription_burst * share
        default = Bucket(burst, b.subscription_per_hour * share, burst)
        return self._buckets.get(subscription.lower(), default)

    @property
    def global_cap(self) -> int:
        """Actions an hour across this replica's targets: its share of the estate's cap,
        rounded down (shares of disjoint partitions never add up past the whole)."""
        return math.floor(self._budgets.global_per_hour * self.share + 1e-9)

    @property
    def memory_span(self) -> timedelta:
        """How far back an action still costs something: the hour's cap, or a bucket
        that has not refilled since."""
        b = self._budgets
        return max(HOUR, timedelta(hours=b.subscription_burst / b.subscription_per_hour))

    def hand_over(self, now: datetime, partition: int) -> HandOver:
        """Shards: ``partition`` lost. The actions of the hour this replica spent beyond its
        new share (the newest, not handed over before), each as (when, subscription,
        target), and what the partition's slice of each subscription's bucket lacks now:
        written into the lost partition's log, its next owner counts them, so a share that
        moves never frees budget spent in its name. This replica keeps counting its
        actions too; the slice left it when the partition did (see :meth:`reshare`)."""
        owed = self._owed(partition, now)
        mine = self._unhanded(now)
        excess = len(mine) - self.global_cap
        if excess <= 0:
            return HandOver([], owed)
        handed = mine[:excess]
        self._handed.update(handed)
        return HandOver(handed, owed)

    def leave(self, now: datetime, partitions: Collection[int]) -> dict[int, HandOver]:
        """Shards, an orderly stop: this replica gives up every partition (its share falls
        to none) and hands ``partitions`` (those whose log it holds) all it spent this
        hour and not handed over before, dealt out newest first across them in turn, with
        what each one's slices lack. Each action goes into one line; each line carries
        its part, so every next owner counts a part, wherever the actions' own logs go
        (one owner taking all of them counts each action once)."""
        if self._owned is None:
            return {}
        self.reshare((), self._partitions, now)
        lines = sorted(partitions)
        mine = self._unhanded(now)
        self._handed.update(mine)
        return {p: HandOver(mine[n :: len(lines)], self._owed(p, now)) for n, p in enumerate(lines)}

    def _owed(self, partition: int, now: datetime) -> dict[str, float]:
        """What ``partition``'s slice of each subscription's bucket lacks now (it left)."""
        owed = {}
        for key, piece in sorted(self._leaving.pop(partition, {}).items()):
            short = piece.capacity - piece.refilled(now).tokens
            if short > _NOTHING:
                owed[key] = short
        return owed

    def _unhanded(self, now: datetime) -> list[tuple[datetime, str, str]]:
        """The actions of the hour this replica counts and has not handed over, newest
        first."""
        mine = [e for e in self._ledger if now - e[0] < HOUR and e not in self._handed]
        return sorted(mine, reverse=True)

    def arrive(
        self,
        partition: int,
        at: datetime | None,
        owed: Mapping[str, float],
        actions: Collection[tuple[datetime, str]] = (),
    ) -> None:
        """Shards: ``partition``'s log, replayed as it is gained, says its slice of these
        subscriptions' buckets lacked ``owed`` tokens at ``at`` (its last ``budget`` line;
        None: it has none, the slice was full), and ``actions`` (when, subscription) are
        those its log holds: each one since the line took a token from the slice (an
        owner that died wrote no line for them). Taken into account when the share grows
        by it (:meth:`reshare`)."""
        since = [(ts, sub.lower()) for ts, sub in actions if at is None or ts >= at]
        self._arriving[partition] = _Arrival(at, {k.lower(): v for k, v in owed.items()}, since)

    def reshare(self, owned: Collection[int], partitions: int, now: datetime) -> None:
        """Shards: this replica owns ``owned`` of ``partitions`` now. Each bucket's burst
        and refill become that share of the estate's.

        A bucket is the sum of one slice per partition (1/partitions of the burst and
        refill), and a slice moves with its partition holding the tokens it had: a move
        makes no tokens. A partition lost takes the tokens this replica's bucket holds
        beyond what the partitions it keeps can hold (none when the bucket is that low),
        shared evenly among the partitions lost; what its slice lacks is handed over with
        it (:meth:`hand_over`). A partition gained brings its slice as its last ``budget``
        line left it (refilled since, at the slice's rate): a bucket this replica had not
        used starts at the new share less what the gained slices lack; one it had used
        keeps its tokens and refills toward the new share (no slice's tokens join it,
        which never gives more). A bucket only replay spent from (the gained partitions'
        own actions) is one this replica had not used, when every partition gained came
        with its log: those actions are in what the slices lack."""
        mine = frozenset(owned)
        share = len(mine) / partitions if partitions else 1.0
        before = self._owned if partitions == self._partitions else None
        self._owned, self._partitions = mine, partitions
        lost = sorted(before - mine) if before is not None else []
        gained = mine - before if before is not None else mine
        arriving = [self._arriving[p] for p in sorted(gained) if p in self._arriving]
        if gained and len(arriving) == len(gained):  # replay's buckets: never used here
            for key in self._replayed:
                self._buckets.pop(key, None)
        self._replayed.clear()
        self._arriving.clear()
        for partition in gained:  # back before its hand-over (never written): it left
            self._leaving.pop(partition, None)
        if share == self.share and not lost and not arriving:
            return
        self.share = share
        b = self._budgets
        burst, per_hour = b.subscription_burst * share, b.subscription_per_hour * share
        slices = max(partitions, 1)
        piece = Bucket(b.subscription_burst / slices, b.subscription_per_hour / slices, 0)
        # what the partitions kept can hold (all of the new share at the first split)
        keep = piece.capacity * len(mine & before) if before is not None else burst
        buckets = {}
        for key, bucket in self._buckets.items():
            bucket = bucket.refilled(now)
            kept = min(bucket.tokens, keep)
            for partition in lost:  # the rest goes with the partitions lost, evenly
                tokens = (bucket.tokens - kept) / len(lost)
                if piece.capacity - tokens > _NOTHING:
                    leaving = self._leaving.setdefault(partition, {})
                    leaving[key] = replace(piece, tokens=tokens, at=now)
            buckets[key] = replace(bucket, capacity=burst, per_hour=per_hour, tokens=kept)
        self._buckets = buckets
        short: dict[str, float] = {}
        for arrival in arriving:
            for key, lacking in arrival.lacking(piece, now).items():
                short[key] = short.get(key, 0.0) + lacking
        for key, lacking in short.items():
            bucket = self._bucket(key).refilled(now)
            self._buckets[key] = replace(bucket, tokens=min(bucket.tokens, burst - lacking))

    def starved(self) -> str | None:
        """Shards: why this replica's share can never afford an action, or None. A share
        is of whole actions: a cap that rounds down to 0, or a bucket that holds less than
        one token when full, never lets a target act, however long it waits."""
        if not self._owned:
            return None  # the whole estate's budgets, or nothing to act for
        owned, partitions = len(self._owned), self._partitions
        least = least_partitions(self._budgets, partitions)
        if owned >= least:
            return None
        b = self._budgets
        return (
            f"this replica's share ({owned} of {partitions} partitions) of the budgets "
            f"(subscriptionBurst {b.subscription_burst}, globalPerHour {b.global_per_hour}) "
            f"is under one action: it never acts; a replica needs {least} partitions — run "
            f"at most {partitions // least} replicas, or raise the budgets"
        )

    def spend(
        self, subscription: str, at: datetime, target: str | None = None, *, replayed: bool = False
    ) -> None:
        """An action ran (or would have): it costs a token and counts toward the hour.
        ``replayed``: an action a gained partition's log holds, not this replica's; with
        ``target`` (its memory key), one already counted is not counted again. An action
        this replica runs is always new."""
        if target is not None:
            if replayed and (target, at) in self._counted:
                return
            self._counted.add((target, at))
        key = subscription.lower()
        if not replayed:
            self._replayed.discard(key)
        elif key not in self._buckets:
            self._replayed.add(key)
        self._buckets[key] = self._bucket(subscription).take(at)
        self._actions.append(at)
        if target is None:
            self._unnamed += 1
        self._ledger.append((at, subscription.lower(), target or f"#{self._unnamed}"))
        # only the last hour counts; a pass that began before this one (its "now" earlier
        # than ``at``) may still count an action an hour older, so keep two
        newest = max(at, self._actions[-1])
        while newest - self._actions[0] >= 2 * HOUR:
            self._actions.popleft()
        while newest - self._ledger[0][0] >= 2 * HOUR:
            self._handed.discard(self._ledger.popleft())
        if len(self._counted) > 2 * len(self._actions) + 64:
            self._counted = {(t, ts) for t, ts in self._counted if newest - ts < 2 * HOUR}

    def note(self, target: str, worst: VerdictState, failing: bool, now: datetime) -> str | None:
        """Record a target's latest state; return an escalation when fail static engages."""
        before = self._states.get(target)
        if before is not None:
            self._breaching -= before[0] is VerdictState.BREACH
            self._failing -= before[1]
        self._states[target] = (worst, failing)
        self._breaching += worst is VerdictState.BREACH
        self._failing += failing
        self._report(target, now)
        if worst is VerdictState.BREACH:
            self._breach_since.setdefault(target, now)
        else:
            self._breach_since.pop(target, None)
        total = max(len(self._states), self._targets)
        breaching, failing_n = self._breaching, self._failing
        rule = self._rule
        why = None
        if breaching > rule.min_targets and breaching / total >= rule.breach_share:
            why = f"{breaching} of {total} targets in breach at once"
        elif failing_n > rule.min_targets and failing_n / total >= rule.error_share:
            why = f"signals failing for {failing_n} of {total} targets"
        if why is not None:
            self._healthy_passes = 0
            first = self.engaged is None
            self.engaged = why
            return f"{FAIL_STATIC}{why}{FAIL_STATIC_HOLDS}" if first else None
        if self.engaged is not None:
            self._healthy_passes += 1
            if self._healthy_passes >= rule.healthy_rounds * total:
                if self._on_release is not None:
                    self._on_release(self.engaged, target, worst, now)
                self.engaged = None
        return None

    def _report(self, target: str, now: datetime) -> None:
        last = self._noted.get(target)
        if last is not None:
            del self._reports[bisect_left(self._reports, last)]
        self._noted[target] = now
        insort(self._reports, now)

    def _reported_since(self, since: datetime) -> int:
        """Targets whose last report is at or after ``since``: a bisection, not a scan."""
        return len(self._reports) - bisect_left(self._reports, since)

    def keep(self, targets: Collection[str]) -> None:
        """The targets now running (a policy reload, a discovery): the rest are forgotten,
        so a target that is gone counts toward no share, and no wait for its report."""
        for gone in [t for t in self._states if t not in targets]:
            self.forget(gone)
        self._targets = len(targets)

    def forget(self, target: str) -> None:
        """Drop what a target reported (it no longer exists or is no longer managed)."""
        state = self._states.pop(target, None)
        if state is not None:
            self._breaching -= state[0] is VerdictState.BREACH
            self._failing -= state[1]
        last = self._noted.pop(target, None)
        if last is not None:
            del self._reports[bisect_left(self._reports, last)]
        self._breach_since.pop(target, None)

    def remaining(self, subscription: str, now: datetime) -> tuple[int, int]:
        """Actions still allowed now: (this subscription's tokens, all targets this hour)."""
        tokens = int(self._bucket(subscription).refilled(now).tokens)
        spent = window_count(self._actions, now, HOUR)
        return max(tokens, 0), max(self.global_cap - spent, 0)

    def holds(self, subscription: str, now: datetime, target: str | None = None) -> str | None:
        """Why no target (or not ``target``) may act now, or None.

        A breach acts only after every target has reported once since it began: targets
        poll on their own jittered schedules, and a failure they share shows in one round.
        """
        if self.engaged is not None:
            return f"fail static: {self.engaged}"
        pressure = self._arm_pressure() if self._arm_pressure else None
        if pressure is not None:
            return pressure
        since = self._breach_since.get(target) if target else None
        if since is not None and self._targets > 1:
            behind = self._targets - self._reported_since(since)
            if behind > 0:
                return (
                    f"waiting for {behind} more target(s) to report since this breach "
                    "began (a shared failure shows in one round)"
                )
        per_hour = window_count(self._actions, now, HOUR)
        if per_hour >= self.global_cap:
            shared = (
                ""
                if self.share == 1.0
                else f" (this replica's share of {self._budgets.global_per_hour})"
            )
            return (
                f"{per_hour} actions across all targets in the last hour; the cap is "
                f"{self.global_cap}{shared}"
            )
        if not self._bucket(subscription).available(now):
            if self.share == 0:
                return f"subscription {subscription}: this replica owns no partition"
            refill = timedelta(hours=1 / (self._budgets.subscription_per_hour * self.share))
            return (
                f"subscription {subscription} has spent its action budget "
                f"(a token every {int(refill.total_seconds())}s)"
            )
        return None


def least_partitions(budgets: BudgetSettings, partitions: int) -> int:
    """The fewest partitions whose share of the budgets affords one action: a full bucket
    of at least one token (``burst × k / partitions ≥ 1``) and an hourly cap of at least one
    (``globalPerHour × k / partitions ≥ 1``). ``partitions // least`` replicas can all act."""
    return max(
        math.ceil(partitions / budgets.subscription_burst - _NOTHING),
        math.ceil(partitions / budgets.global_per_hour - _NOTHING),
        1,
    )
