-- Patching (ADR 28). The latest scan of each device replaces the previous one; its updates
-- are rows (not a jsonb list) so that the compliance report over 10,000 devices counts them
-- in PostgreSQL. `first_seen` survives rescans of the same candidate: automatic approval's
-- deferral counts from when an update was first reported anywhere in the namespace.
CREATE TABLE patch_scans (
    device_uid uuid PRIMARY KEY,
    namespace text NOT NULL,
    scanned_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    backend text,
    problem text,
    installed_packages integer NOT NULL,
    reboot_required boolean NOT NULL
);

CREATE TABLE patch_updates (
    device_uid uuid NOT NULL REFERENCES patch_scans (device_uid) ON DELETE CASCADE,
    name text NOT NULL,
    from_version text NOT NULL,
    to_version text NOT NULL,
    classification text NOT NULL,
    source text NOT NULL,
    size_bytes bigint,
    reboot_required boolean NOT NULL,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (device_uid, name)
);
CREATE INDEX patch_updates_by_package ON patch_updates (name, to_version);

-- The latest state of each package version an install item carried to a device. A failed
-- one records the window opening it failed in: it is tried again in a later opening.
CREATE TABLE patch_installs (
    device_uid uuid NOT NULL,
    namespace text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    policy text NOT NULL,
    ring text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'downloading', 'installing', 'installed', 'failed', 'skipped')),
    exit_code integer,
    detail text,
    log_tail text,
    opening timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (device_uid, name, version)
);
CREATE INDEX patch_installs_by_policy ON patch_installs (namespace, policy, name, version);

-- Work reports already applied (a retried report is acknowledged, not applied twice).
CREATE TABLE work_reports (
    report_id uuid PRIMARY KEY,
    device_uid uuid NOT NULL,
    item uuid NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX work_reports_by_age ON work_reports (received_at);

-- Items an agent reported done: never handed out again.
CREATE TABLE work_done (
    device_uid uuid NOT NULL,
    item uuid NOT NULL,
    done_at timestamptz NOT NULL,
    PRIMARY KEY (device_uid, item)
);

-- A rollout of one package version under one policy, ring by ring: a ring is open once
-- the engine opened it (ring 0 when the version is first approved; a later ring when the
-- one before finished and soaked without a failure or a new firing alert). A halted
-- rollout stays halted until the policy's generation changes (a commit).
CREATE TABLE patch_rollouts (
    namespace text NOT NULL,
    policy text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    ring integer NOT NULL,
    opened_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, policy, name, version, ring)
);

CREATE TABLE patch_halts (
    namespace text NOT NULL,
    policy text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    ring integer NOT NULL,
    generation bigint NOT NULL,
    reason text NOT NULL,
    halted_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, policy, name, version)
);
