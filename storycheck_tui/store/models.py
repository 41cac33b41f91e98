"""The tables of storycheck (peewee models bound at run time to SQLite or PostgreSQL).

All times are epoch seconds (floats) from the database clock where it matters (leases).
"""

from __future__ import annotations

from peewee import (
    BooleanField, CharField, CompositeKey, DatabaseProxy, DoubleField, ForeignKeyField, IntegerField, Model,
    TextField,
)

from storycheck_tui.states import BatchState, DeliveryState, EventType, JobState, ProxyState, WorkerState, sql

database = DatabaseProxy()

# Older names of the states, kept while callers move to ``storycheck_tui.states``.
QUEUED, RUNNING, PAUSED, CANCELLED, FINISHED = (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED,
                                                BatchState.CANCELLED, BatchState.FINISHED)
PENDING, JOB_RUNNING, SUCCEEDED, FAILED, JOB_CANCELLED = (JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED,
                                                          JobState.FAILED, JobState.CANCELLED)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Meta_(BaseModel):
    """Key/value facts about the database itself (the schema version)."""

    key = CharField(primary_key=True)
    value = TextField()

    class Meta:
        table_name = "storycheck_meta"


class Batch(BaseModel):
    name = CharField()
    state = CharField(default=BatchState.QUEUED.value)
    priority = IntegerField(default=0)
    source_file = TextField(null=True)
    created_at = DoubleField()
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)
    total_profiles = IntegerField(default=0)
    completed_profiles = IntegerField(default=0)  # succeeded + failed
    successful_checks = IntegerField(default=0)
    failed_checks = IntegerField(default=0)
    cancelled_profiles = IntegerField(default=0)
    state_reason = TextField(null=True)  # why it is paused/cancelled, shown to the operator
    watch_id = IntegerField(null=True)  # the watch this batch is a round of (schema version 3)
    requests = IntegerField(default=0)  # requests sent to the story source by its ended checks (v4)
    max_requests = IntegerField(null=True)  # the request budget: paused when requests reach it (v4)


class Job(BaseModel):
    """One profile in one batch."""

    batch = ForeignKeyField(Batch, backref="jobs", on_delete="CASCADE", index=False)
    username = CharField()
    state = CharField(default=JobState.PENDING.value)
    attempts = IntegerField(default=0)  # claims that counted (a voluntary release gives one back)
    lease_seq = IntegerField(default=0)  # +1 on every claim, never reset: fences a finish
    run_after = DoubleField(default=0.0)
    lease_owner = CharField(null=True)
    lease_until = DoubleField(null=True)
    outcome = CharField(null=True)
    story_count = IntegerField(null=True)
    latest_story_at = DoubleField(null=True)
    error_kind = CharField(null=True)
    error_message = TextField(null=True)
    proxy = CharField(null=True)  # masked label
    http_status = IntegerField(null=True)
    latency_ms = DoubleField(null=True)
    tries = IntegerField(default=0)  # HTTP requests made by the last attempt
    started_at = DoubleField(null=True)
    # a check of the current claim has started (the worker says so in its group commit); NULL:
    # claimed, still waiting in the worker's inbox. The reaper counts an expired lease against
    # max_claims only when set (schema version 3)
    check_started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)

    class Meta:
        indexes = ((("batch", "username"), True),)


class Story(BaseModel):
    username = CharField()
    story_id = CharField()
    taken_at = DoubleField(null=True)
    expires_at = DoubleField(null=True)
    media_type = CharField(null=True)
    first_seen_at = DoubleField()
    batch = IntegerField(null=True)  # the batch that first saw it (no FK: history outlives batches)

    class Meta:
        indexes = ((("username", "story_id"), True),)


class Proxy(BaseModel):
    url = TextField(unique=True)  # may hold credentials: never shown, logged or exported
    label = CharField()
    state = CharField(default=ProxyState.UNCHECKED.value)
    fail_streak = IntegerField(default=0)
    successes = IntegerField(default=0)
    failures = IntegerField(default=0)
    last_latency_ms = DoubleField(null=True)
    cooldown_until = DoubleField(null=True)
    last_error = TextField(null=True)
    updated_at = DoubleField(default=0.0)
    disabled = BooleanField(default=False)  # operator's word; wins over health
    # an operator asked every worker to validate this proxy now (DB clock); each worker acts on
    # a value once (schema version 2)
    validate_requested_at = DoubleField(null=True)


class BatchLog(BaseModel):
    created = DoubleField()
    level = CharField()
    event = CharField(null=True)
    batch = IntegerField(null=True)
    job = IntegerField(null=True)
    username = CharField(null=True)
    proxy = CharField(null=True)
    message = TextField()
    details = TextField(null=True)  # JSON

    class Meta:
        table_name = "batch_log"
        indexes = ((("batch", "id"), False), (("job",), False))


class Spend(BaseModel):
    """Requests sent per batch and per result (an outcome, or the error kind of a failure) (v4)."""

    batch = IntegerField()
    result = CharField()
    requests = IntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("batch", "result")


class Worker(BaseModel):
    id = CharField(primary_key=True)
    host = CharField()
    pid = IntegerField()
    threads = IntegerField(default=0)
    started_at = DoubleField()
    heartbeat_at = DoubleField()
    checks = IntegerField(default=0)  # finished by this worker
    rate = DoubleField(default=0.0)  # recent checks/s
    state = CharField(default=WorkerState.RUNNING.value)  # a WorkerState
    # the pace this worker learned for its source's API key (requests/s) and the key's name
    # (engine/pace.key_of: host and a hash, never the key): a worker that starts late on the
    # same key begins at its share of what the others learned (schema version 6)
    pace = DoubleField(null=True)
    pace_key = CharField(null=True)
    # why its pace last changed, and its source's circuit breaker ("closed", "open", "probing")
    # with the failure that opened it: for `batches` and the console (schema version 7)
    pace_reason = TextField(null=True)
    circuit = CharField(null=True)
    circuit_reason = TextField(null=True)
    # why it can send nothing now (no usable proxy, circuit open, a Retry-After): `batches` and a
    # watch-only console say so (schema version 8); None while its checks can go out
    blocked = TextField(null=True)


class Knob(BaseModel):
    """An operator's runtime setting (pace cap, threads per worker) that every worker's keeper
    reads within a second; no row: each worker's own settings (schema version 7)."""

    name = CharField(primary_key=True)
    value = DoubleField()
    set_at = DoubleField()


class Watch(BaseModel):
    """A watchlist checked every ``every`` seconds; each round is a batch (schema version 3)."""

    name = CharField(unique=True)
    every = DoubleField()  # seconds between rounds
    webhook = TextField(null=True)  # may hold credentials: shown masked only
    paused = BooleanField(default=False)
    created_at = DoubleField()
    next_round_at = DoubleField()  # database clock; the worker that moves it starts the round
    last_round = IntegerField(null=True)  # batch id of the newest round
    rounds = IntegerField(default=0)


class WatchProfile(BaseModel):
    """A profile of a watch and where it stood after its last checked round."""

    watch_id = IntegerField()
    username = CharField()
    status = CharField(null=True)  # a ProfileStatus, None until first checked
    status_since = DoubleField(null=True)

    class Meta:
        table_name = "watch_profile"
        indexes = ((("watch_id", "username"), True),)


class WatchStory(BaseModel):
    """Story history: each story id seen for a profile of a watch."""

    watch_id = IntegerField()
    username = CharField()
    story_id = CharField()
    taken_at = DoubleField(null=True)
    expires_at = DoubleField(null=True)
    first_seen = DoubleField()
    last_seen = DoubleField()

    class Meta:
        table_name = "watch_story"
        indexes = ((("watch_id", "username", "story_id"), True), (("username",), False))


class ProfileChange(BaseModel):
    """A profile's status over time (became private, not found, back), one row per change."""

    watch_id = IntegerField()
    username = CharField()
    status = CharField()
    at = DoubleField()

    class Meta:
        table_name = "profile_change"
        indexes = ((("username", "id"), False),)


class Event(BaseModel):
    """The outbox: written in the transaction of the fenced finish that saw it, delivered later."""

    type = CharField()  # story.new | profile.changed
    watch_id = IntegerField()
    watch = CharField()  # the watch's name when the event happened
    username = CharField()
    story_id = CharField(null=True)
    taken_at = DoubleField(null=True)
    details = TextField(null=True)  # JSON: from/to of a profile.changed
    at = DoubleField()
    delivery = CharField()  # a DeliveryState
    attempts = IntegerField(default=0)
    next_try_at = DoubleField(null=True)
    lease_until = DoubleField(null=True)  # a deliverer is posting it until then
    last_error = TextField(null=True)
    delivered_at = DoubleField(null=True)

    class Meta:
        table_name = "event"
        indexes = ((("watch_id", "id"), False),)


MODELS = [Meta_, Batch, Job, Story, Proxy, BatchLog, Worker, Watch, WatchProfile, WatchStory, ProfileChange, Event, Spend,
          Knob]
PARTIAL_INDEXES = [
    # The claim reads only pending jobs: a partial index stays small with millions finished.
    ("job_pending", f"CREATE INDEX IF NOT EXISTS job_pending ON job (batch_id, id) WHERE state = {sql(JobState.PENDING)}"),
    ("job_running", f"CREATE INDEX IF NOT EXISTS job_running ON job (lease_until) WHERE state = {sql(JobState.RUNNING)}"),
    ("job_by_state", "CREATE INDEX IF NOT EXISTS job_batch_state ON job (batch_id, state)"),
    # A story is one event, whatever happens (schema version 3).
    ("event_story", "CREATE UNIQUE INDEX IF NOT EXISTS event_story ON event (watch_id, username, story_id) "
                    f"WHERE type = {sql(EventType.STORY_NEW)}"),
    ("event_due", f"CREATE INDEX IF NOT EXISTS event_due ON event (next_try_at) WHERE delivery = {sql(DeliveryState.PENDING)}"),
]
