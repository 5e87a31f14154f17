-- Discovery: runs of DiscoveryScans, the hosts they found, and the LLDP links between
-- Devices (the topology).

-- One row per run. The scheduler creates it assigned to a collector; the collector's
-- reports move it on. At most one unfinished run per scan (a partial unique index), so two
-- operators or two passes can never start the same scan twice.
CREATE TABLE discovery_runs (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    scan text NOT NULL,
    scan_uid uuid NOT NULL,
    generation bigint NOT NULL,
    collector text NOT NULL,
    collector_uid uuid NOT NULL,
    state text NOT NULL CHECK (state IN ('Pending', 'Running', 'Succeeded', 'Failed')),
    message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    last_report_at timestamptz,
    -- The collector's `startedMs` of the attempt it reports; a new value is a restart.
    collector_started_ms bigint,
    restarts integer NOT NULL DEFAULT 0,
    total bigint NOT NULL DEFAULT 0,
    scanned bigint NOT NULL DEFAULT 0,
    counts jsonb NOT NULL DEFAULT '{}',
    -- Set once every host of a finished run is processed (registered, matched, missing).
    settled boolean NOT NULL DEFAULT false,
    -- Devices an earlier run found that this one did not (marked not responding).
    missing integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX discovery_runs_one_active ON discovery_runs (namespace, scan)
    WHERE state IN ('Pending', 'Running');
CREATE INDEX discovery_runs_by_scan ON discovery_runs (namespace, scan, created_at DESC);
CREATE INDEX discovery_runs_unsettled ON discovery_runs (created_at) WHERE NOT settled;

-- Hosts a run found. A restarted run finds them again: the newer facts replace the older.
CREATE TABLE discovery_hosts (
    run uuid NOT NULL REFERENCES discovery_runs (id) ON DELETE CASCADE,
    address inet NOT NULL,
    facts jsonb NOT NULL,
    found_at timestamptz NOT NULL,
    processed boolean NOT NULL DEFAULT false,
    -- What processing did: registered, proposed, updated, matched or reported.
    outcome text,
    device text,
    PRIMARY KEY (run, address)
);
CREATE INDEX discovery_hosts_pending ON discovery_hosts (run) WHERE NOT processed;

-- LLDP neighbours as edges: `device` saw `remote_chassis`/`remote_port` on `local_port`;
-- `remote_device` is the Device with that chassis id (or management address) once known.
CREATE TABLE topology_links (
    namespace text NOT NULL,
    device text NOT NULL,
    local_port text NOT NULL,
    remote_chassis text NOT NULL,
    remote_port text NOT NULL,
    remote_device text,
    remote_name text NOT NULL DEFAULT '',
    remote_address inet,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, device, local_port, remote_chassis, remote_port)
);
CREATE INDEX topology_links_remote ON topology_links (namespace, remote_device);
