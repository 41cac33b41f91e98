"""Fixed watches for the watch view's snapshot and screenshot (added to the sample database).

Made through the store's own functions (``add_watch``, ``start_due_rounds``, ``claim``,
``finish``: the story history and the events come from the fenced finish, as a worker writes
them), then every time they stamped is pinned to :data:`~storycheck_tui.ui.sample.FIXED_NOW`:
the same pixels on every run.

* ``spring-influencers``: every 15m with a webhook (its password masked); round 1 finished,
  round 2 half checked with new stories;
* ``brand-partners``: every 1h, round 1 finished, a failed check;
* ``night-shift``: every 1d, paused after its round;
* ``launch-day``: added, no round yet.
"""

from __future__ import annotations

from storycheck_tui.sources.base import Outcome, Story
from storycheck_tui.states import JobState, OutcomeKind
from storycheck_tui.store import queue as q
from storycheck_tui.store import watches
from storycheck_tui.store.db import Store
from storycheck_tui.store.models import Batch, BatchLog, Event, Job, Watch, WatchStory
from storycheck_tui.ui.sample import FIXED_NOW

OWNER = "app-01:31337:9f3a1c"
CAMPAIGN = [f"{n}.{k}" for n in ("lena", "omar", "yuki", "ravi", "ines") for k in ("travels", "cooks", "runs", "paints")]
BRAND = ["acme.coffee", "acme.outdoor", "northwind.tea", "globex.shoes", "initech.labs", "umbrella.fit"]
NIGHT = ["owl.radio", "late.kitchen", "moon.runner"]


def _outcome(username: str, round_no: int, now: float) -> Outcome:
    """What the story API says about ``username`` in round ``round_no`` (fixed)."""
    h = sum(map(ord, username))
    if h % 5 == 0:
        return Outcome(OutcomeKind.PRIVATE)
    n = (h + round_no) % 3
    stories = tuple(Story(f"{3_481_000_000 + h * 10 + r}", now - 3_600 * (round_no - r + 1) - h % 600)
                    for r in range(1, round_no + 1)) if n else ()
    return Outcome(OutcomeKind.HAS_STORIES if stories else OutcomeKind.NO_STORIES, stories=stories)


def _round(store: Store, name: str, round_no: int, *, created: float, finished: float | None, check: int | None = None,
           fail: tuple[str, ...] = ()) -> None:
    """Start ``name``'s due round, check ``check`` of its profiles (all: None), pin its times."""
    Watch.update(next_round_at=0.0).where(Watch.name == name).execute()
    (r,) = [r for r in watches.start_due_rounds(store) if r.watch == name]
    claimed = q.claim(store, OWNER, 600, check if check is not None else 10_000, [r.batch_id])
    first_event = int(Event.select(Event.id).order_by(Event.id.desc()).limit(1).scalar() or 0)
    q.finish(store, OWNER, [
        q.JobResult(job=c, state=JobState.FAILED, error_kind="source_unavailable",
                    error_message="HTTP 503 Service Unavailable (4 tries)", http_status=503, tries=4)
        if c.username in fail else
        q.JobResult(job=c, state=JobState.SUCCEEDED, outcome=_outcome(c.username, round_no, created), http_status=200,
                    latency_ms=200.0 + i * 7, tries=1)
        for i, c in enumerate(claimed)])
    Batch.update(created_at=created, started_at=created + 1,
                 finished_at=finished).where(Batch.id == r.batch_id).execute()
    Job.update(started_at=created + 2, finished_at=created + 3).where(
        (Job.batch == r.batch_id) & Job.finished_at.is_null(False)).execute()
    events = list(Event.select().where(Event.id > first_event).order_by(Event.id))
    for i, e in enumerate(events):
        at = created + 5 + i * 13
        Event.update(at=at).where(Event.id == e.id).execute()
        WatchStory.update(first_seen=at).where((WatchStory.watch_id == e.watch_id) & (WatchStory.username == e.username)
                                               & (WatchStory.story_id == e.story_id)).execute()
    WatchStory.update(last_seen=created + 4).where(
        WatchStory.watch_id == Watch.get(Watch.name == name).id).execute()
    WatchStory.update(last_seen=WatchStory.first_seen).where(WatchStory.last_seen < WatchStory.first_seen).execute()


def add_sample_watches(store: Store, now: float = FIXED_NOW) -> None:
    last_log = int(BatchLog.select(BatchLog.id).order_by(BatchLog.id.desc()).limit(1).scalar() or 0)
    watches.add_watch(store, "spring-influencers", CAMPAIGN, every=900.0,
                      webhook="https://ops:hunter2@hooks.example.com/storycheck")
    watches.add_watch(store, "brand-partners", BRAND, every=3_600.0)
    watches.add_watch(store, "night-shift", NIGHT, every=86_400.0)
    Watch.update(next_round_at=now + 1e9).execute()  # no round until each is made due below
    _round(store, "spring-influencers", 1, created=now - 1_020, finished=now - 960)
    _round(store, "spring-influencers", 2, created=now - 120, finished=None, check=11)
    _round(store, "brand-partners", 1, created=now - 2_400, finished=now - 2_310, fail=("globex.shoes",))
    _round(store, "night-shift", 1, created=now - 30_000, finished=now - 29_700)
    watches.set_paused(store, "night-shift", True)
    watches.add_watch(store, "launch-day", ["acme.launch", "acme.events"], every=1_800.0)
    for name, created, nxt in (("spring-influencers", now - 4 * 3_600, now + 780),
                               ("brand-partners", now - 2 * 86_400, now + 1_200),
                               ("night-shift", now - 9 * 86_400, now + 56_100),
                               ("launch-day", now - 40, now - 40)):
        Watch.update(created_at=created, next_round_at=nxt).where(Watch.name == name).execute()
    for i, row in enumerate(BatchLog.select(BatchLog.id).where(BatchLog.id > last_log).order_by(BatchLog.id)):
        BatchLog.update(created=now - 300 + i).where(BatchLog.id == row.id).execute()  # what the rounds logged
