-- Automation (issue 16): workflow runs as persisted state machines, and the audit log.
--
-- A run is one trigger occurrence over one or more devices; each device goes through the
-- steps on its own lane. Everything the engine needs to resume after a restart (kill -9
-- included) is here: which step a lane is at, which attempt, when to look at it next, and
-- each attempt with the work id handed to the agent (its idempotency key).

CREATE TABLE workflow_runs (
    id          uuid PRIMARY KEY,
    namespace   text NOT NULL,
    workflow    text NOT NULL,
    -- The spec the run follows: a later edit of the Workflow does not change a started run.
    generation  bigint NOT NULL,
    spec        jsonb NOT NULL,
    event       jsonb NOT NULL,
    trigger     text NOT NULL,
    started_by  text NOT NULL,
    state       text NOT NULL,
    waiting_for text,
    started     timestamptz NOT NULL,
    finished    timestamptz,
    -- One run per trigger occurrence: an event seen twice (a replayed batch, two operator
    -- replicas) starts one run.
    dedup_key   text
);
CREATE UNIQUE INDEX workflow_runs_dedup ON workflow_runs (namespace, workflow, dedup_key)
    WHERE dedup_key IS NOT NULL;
CREATE INDEX workflow_runs_by_workflow ON workflow_runs (namespace, workflow, started DESC);
CREATE INDEX workflow_runs_active ON workflow_runs (state)
    WHERE state IN ('Running', 'AwaitingApproval');

CREATE TABLE workflow_lanes (
    run         uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    device      uuid NOT NULL,
    device_name text NOT NULL,
    -- Order in the run: the blast-radius limit holds the lanes past it.
    position    integer NOT NULL,
    state       text NOT NULL,
    -- Index of the current step in the run's spec.
    step        integer NOT NULL DEFAULT 0,
    -- Attempts made of the current step.
    attempt     integer NOT NULL DEFAULT 0,
    -- Start: make the next attempt; Wait: an attempt is out (agent step, wait); Retry: the
    -- delay before the next attempt.
    phase       text NOT NULL DEFAULT 'Start',
    -- When the engine looks at the lane next (a wait, a retry delay, a step's deadline).
    next_at     timestamptz,
    vars        jsonb NOT NULL DEFAULT '{}',
    -- Outputs of finished steps by step name, for rhai (`steps`).
    outputs     jsonb NOT NULL DEFAULT '{}',
    failed_any  boolean NOT NULL DEFAULT false,
    started     timestamptz,
    finished    timestamptz,
    PRIMARY KEY (run, device)
);
CREATE INDEX workflow_lanes_due ON workflow_lanes (next_at) WHERE state = 'Running';
CREATE INDEX workflow_lanes_by_device ON workflow_lanes (device, started DESC);

CREATE TABLE workflow_attempts (
    run         uuid NOT NULL,
    device      uuid NOT NULL,
    step_index  integer NOT NULL,
    attempt     integer NOT NULL,
    step        text NOT NULL,
    type        text NOT NULL,
    state       text NOT NULL,
    -- Agent steps: the work item handed out (its id is the idempotency key).
    work_id     uuid UNIQUE,
    work        jsonb,
    started     timestamptz NOT NULL,
    deadline    timestamptz,
    finished    timestamptz,
    result      jsonb,
    message     text NOT NULL DEFAULT '',
    PRIMARY KEY (run, device, step_index, attempt),
    FOREIGN KEY (run, device) REFERENCES workflow_lanes (run, device) ON DELETE CASCADE
);
CREATE INDEX workflow_attempts_pending ON workflow_attempts (device)
    WHERE state IN ('Dispatched', 'Running');

CREATE TABLE workflow_approvals (
    run     uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    what    text NOT NULL,
    by_whom text NOT NULL,
    at      timestamptz NOT NULL,
    comment text NOT NULL DEFAULT ''
);
CREATE INDEX workflow_approvals_run ON workflow_approvals (run);

-- Service failures seen on ingest (a monitored service's serviceFailed going to 1), for
-- ServiceFailed triggers that count failures within a window.
CREATE TABLE service_failures (
    device    uuid NOT NULL,
    service   text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX service_failures_by_device ON service_failures (device, service, at DESC);

-- The audit log: one hash chain over every entry. `body` is the exact canonical JSON that
-- was hashed (so verification does not depend on how jsonb re-encodes numbers or orders
-- keys); the other columns are copies for queries.
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY,
    at        timestamptz NOT NULL,
    namespace text NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    run       uuid,
    body      text NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL
);
CREATE INDEX audit_log_by_run ON audit_log (run, seq) WHERE run IS NOT NULL;
CREATE INDEX audit_log_by_namespace ON audit_log (namespace, seq);

-- Where the retained chain starts: retention deletes the oldest entries and records the
-- last deleted one here, so verification starts from a known hash instead of zeros.
CREATE TABLE audit_anchor (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq       bigint NOT NULL,
    hash      text NOT NULL
);
