-- The certificate authority that issues agent certificates (one row).
CREATE TABLE certificate_authority (
    id         smallint    PRIMARY KEY CHECK (id = 1),
    cert_pem   text        NOT NULL,
    key_pem    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Enrollment tokens of the last applied desired state, with how often each was used.
-- Only SHA-256 hashes are kept.
CREATE TABLE enrollment_tokens (
    namespace    text        NOT NULL,
    name         text        NOT NULL,
    token_sha256 bytea       NOT NULL UNIQUE,
    expires_at   timestamptz,
    max_uses     integer     NOT NULL CHECK (max_uses >= 1),
    uses         integer     NOT NULL DEFAULT 0,
    labels       jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (namespace, name)
);

-- One row per device identity an enrollment created. A device re-enrolled (a reinstalled
-- host) keeps its uid; the new credentials replace the old ones.
CREATE TABLE agents (
    uid                uuid        PRIMARY KEY,
    namespace          text        NOT NULL,
    name               text        NOT NULL,
    auth               text        NOT NULL CHECK (auth IN ('mtls', 'jwt')),
    jwt_public_key     bytea,
    certificate_serial text,
    certificate_expiry timestamptz,
    agent_version      text        NOT NULL,
    enrolled_with      text        NOT NULL,
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name)
);
