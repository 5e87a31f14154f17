-- Desired state and status of every custom resource, whichever source it came from.
CREATE SEQUENCE object_resource_version;

CREATE TABLE objects (
    namespace        text        NOT NULL,
    kind             text        NOT NULL,
    name             text        NOT NULL,
    uid              uuid        NOT NULL,
    generation       bigint      NOT NULL DEFAULT 1,
    resource_version bigint      NOT NULL DEFAULT nextval('object_resource_version'),
    labels           jsonb       NOT NULL DEFAULT '{}',
    annotations      jsonb       NOT NULL DEFAULT '{}',
    spec             jsonb       NOT NULL,
    status           jsonb       NOT NULL DEFAULT '{}',
    -- Who owns the object: 'manifests' objects are pruned when their document disappears;
    -- objects created by agent enrollment or discovery are not.
    managed_by       text        NOT NULL DEFAULT 'manifests',
    source           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, kind, name)
);

CREATE INDEX objects_kind ON objects (kind, namespace);

-- API tokens of the last applied desired state. Only SHA-256 hashes are kept.
CREATE TABLE api_tokens (
    namespace    text     NOT NULL,
    name         text     NOT NULL,
    token_sha256 bytea    NOT NULL UNIQUE,
    role         text     NOT NULL,
    namespaces   text[]   NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- One row per change set the standalone source applied or refused: the audit trail of GitOps.
CREATE TABLE manifest_loads (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    fingerprint text        NOT NULL,
    applied     boolean     NOT NULL,
    created     integer     NOT NULL DEFAULT 0,
    updated     integer     NOT NULL DEFAULT 0,
    deleted     integer     NOT NULL DEFAULT 0,
    errors      jsonb       NOT NULL DEFAULT '[]'
);
