//! Agent identities, enrollment tokens and the certificate authority.
use std::collections::BTreeMap;

use cdot_crds::enrollment_token::EnrollmentToken;
use serde_json::{Value, json};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{Store, StoreError};

/// Channel on which a re-enrollment announces the uid whose old credentials it revoked.
pub const REVOKED_CHANNEL: &str = "cdot_agent_revoked";

/// How an agent authenticates after enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCredentials {
    /// A client certificate the operator's CA issued.
    Certificate {
        serial: String,
        expiry: jiff::Timestamp,
    },
    /// Ed25519 JWTs verified with this public key.
    Jwt { public_key: Vec<u8> },
}

/// What an enrollment asks for.
#[derive(Debug, Clone)]
pub struct EnrollmentRequest<'a> {
    pub token_sha256: [u8; 32],
    pub namespace: Option<&'a str>,
    pub device_name: &'a str,
    pub agent_version: &'a str,
    /// The spec given to a Device that enrollment creates.
    pub default_spec: Value,
}

/// Why an enrollment token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentRefusal {
    #[error("unknown enrollment token")]
    UnknownToken,
    #[error("enrollment token {namespace}/{name} expired at {expired}")]
    Expired {
        namespace: String,
        name: String,
        expired: String,
    },
    #[error("enrollment token {namespace}/{name} has been used {max_uses} of {max_uses} times")]
    Exhausted {
        namespace: String,
        name: String,
        max_uses: i32,
    },
    #[error(
        "enrollment token {namespace}/{name} belongs to namespace {namespace:?}, not {requested:?}"
    )]
    WrongNamespace {
        namespace: String,
        name: String,
        requested: String,
    },
    #[error(
        "enrollment token {namespace}/{name} is bound to Device {device:?} and cannot enroll {requested:?}"
    )]
    WrongDevice {
        namespace: String,
        name: String,
        device: String,
        requested: String,
    },
    #[error(
        "Device {namespace}/{device} already has an enrolled agent (enrolled at {enrolled_at} with token {enrolled_with}); \
         to enroll it again (a reinstalled host), an admin issues a token bound to it: \
         `cdot-operator token create --type enrollment --namespace {namespace} --name {device}-reenroll --device {device}` \
         and applies it with the manifests; the new enrollment revokes the current agent's credentials. \
         Otherwise choose another --device-name"
    )]
    AlreadyEnrolled {
        namespace: String,
        device: String,
        enrolled_at: String,
        enrolled_with: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError<E> {
    #[error(transparent)]
    Refused(EnrollmentRefusal),
    #[error("failed to issue credentials: {0}")]
    Credentials(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub namespace: String,
    pub device_name: String,
    pub device_uid: Uuid,
    pub created: bool,
}

/// A known agent, as the authentication layer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
    pub jwt_public_key: Option<Vec<u8>>,
    /// Serial (hex) of the certificate the agent holds now (mutual TLS).
    pub certificate_serial: Option<String>,
    /// Serial of the certificate before the last renewal, until the new one is first used.
    pub previous_certificate_serial: Option<String>,
}

impl AgentRecord {
    /// Whether a certificate with this serial (hex) is the agent's current one (`Some(true)`),
    /// the one before its last renewal (`Some(false)`), or neither: replaced by a later
    /// enrollment, so refused (`None`).
    pub fn certificate_is_current(&self, serial: &str) -> Option<bool> {
        let serial = normalize_serial(serial);
        let matches = |s: &Option<String>| s.as_deref().map(normalize_serial) == Some(serial);
        if matches(&self.certificate_serial) {
            Some(true)
        } else if matches(&self.previous_certificate_serial) {
            Some(false)
        } else {
            None
        }
    }
}

/// A serial in hex without leading zero bytes (DER integers drop them).
pub fn normalize_serial(serial: &str) -> &str {
    let mut s = serial;
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s
}

/// An enrollment token that would be accepted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsableToken {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The one Device the token is bound to (re-enrollment), if any.
    pub device: Option<String>,
}

impl Store {
    pub async fn certificate_authority(&self) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT cert_pem, key_pem FROM certificate_authority WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("read the certificate authority"))?;
        Ok(row.map(|r| (r.get("cert_pem"), r.get("key_pem"))))
    }

    /// Stores a new CA unless one exists already (then the existing one wins).
    pub async fn insert_certificate_authority(
        &self,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO certificate_authority (id, cert_pem, key_pem) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(cert_pem)
            .bind(key_pem)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("store the certificate authority"))?;
        Ok(())
    }

    /// Makes the stored enrollment tokens those of the desired state. Use counts survive
    /// unless the token itself changed (rotated).
    pub(crate) async fn replace_enrollment_tokens(
        tx: &mut Transaction<'_, Postgres>,
        tokens: &[EnrollmentToken],
    ) -> Result<(), StoreError> {
        let namespaces: Vec<&str> = tokens.iter().map(|t| t.namespace.as_str()).collect();
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        sqlx::query(
            "DELETE FROM enrollment_tokens e WHERE NOT EXISTS (
                 SELECT 1 FROM unnest($1::text[], $2::text[]) AS d(namespace, name)
                 WHERE d.namespace = e.namespace AND d.name = e.name)",
        )
        .bind(&namespaces)
        .bind(&names)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("prune enrollment tokens"))?;
        for token in tokens {
            sqlx::query(
                "INSERT INTO enrollment_tokens (namespace, name, token_sha256, expires_at, max_uses, labels, device)
                 VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7)
                 ON CONFLICT (namespace, name) DO UPDATE SET
                     uses = CASE WHEN enrollment_tokens.token_sha256 = EXCLUDED.token_sha256 THEN enrollment_tokens.uses ELSE 0 END,
                     token_sha256 = EXCLUDED.token_sha256,
                     expires_at = EXCLUDED.expires_at,
                     max_uses = EXCLUDED.max_uses,
                     labels = EXCLUDED.labels,
                     device = EXCLUDED.device",
            )
            .bind(&token.namespace)
            .bind(&token.name)
            .bind(token.token_sha256.as_slice())
            .bind(token.expires.map(|t| t.to_string()))
            .bind(i32::try_from(token.max_uses).unwrap_or(i32::MAX))
            .bind(json!(token.labels))
            .bind(&token.device)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("store enrollment tokens"))?;
        }
        Ok(())
    }

    /// The enrollment token that would be accepted now, without consuming a use; `None`
    /// when [`Store::enroll`] would refuse it.
    pub async fn usable_enrollment_token(
        &self,
        token_sha256: &[u8; 32],
    ) -> Result<Option<UsableToken>, StoreError> {
        let row = sqlx::query(
            "SELECT namespace, name, labels, device FROM enrollment_tokens
             WHERE token_sha256 = $1 AND (expires_at IS NULL OR expires_at > now()) AND uses < max_uses",
        )
        .bind(token_sha256.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("look up an enrollment token"))?;
        Ok(row.map(|row| UsableToken {
            namespace: row.get("namespace"),
            name: row.get("name"),
            labels: serde_json::from_value(row.get("labels")).unwrap_or_default(),
            device: row.get("device"),
        }))
    }

    /// Enrolls a device in one transaction: consumes one use of the token, finds or creates
    /// the Device, issues credentials through `issue` and records the agent. Nothing is
    /// consumed when any step fails.
    ///
    /// A Device whose agent is enrolled is refused ([`EnrollmentRefusal::AlreadyEnrolled`])
    /// unless the token is bound to it; then the new credentials replace the old ones, which
    /// stop working at once (ADR 15).
    pub async fn enroll<E>(
        &self,
        request: EnrollmentRequest<'_>,
        issue: impl FnOnce(Uuid, &str) -> Result<AgentCredentials, E>,
    ) -> Result<Enrolled, EnrollmentError<E>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin enrollment"))?;
        let token = sqlx::query(
            "UPDATE enrollment_tokens SET uses = uses + 1
             WHERE token_sha256 = $1 AND (expires_at IS NULL OR expires_at > now()) AND uses < max_uses
             RETURNING namespace, name, labels, device",
        )
        .bind(request.token_sha256.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("consume enrollment token"))?;
        let Some(token) = token else {
            let refusal = self.why_refused(&mut tx, &request.token_sha256).await?;
            return Err(EnrollmentError::Refused(refusal));
        };
        let namespace: String = token.get("namespace");
        let token_name: String = token.get("name");
        if let Some(requested) = request.namespace
            && requested != namespace
        {
            return Err(EnrollmentError::Refused(
                EnrollmentRefusal::WrongNamespace {
                    namespace,
                    name: token_name,
                    requested: requested.to_owned(),
                },
            ));
        }
        let bound_to: Option<String> = token.get("device");
        if let Some(device) = &bound_to
            && device != request.device_name
        {
            return Err(EnrollmentError::Refused(EnrollmentRefusal::WrongDevice {
                namespace,
                name: token_name,
                device: device.clone(),
                requested: request.device_name.to_owned(),
            }));
        }
        let labels: BTreeMap<String, String> =
            serde_json::from_value(token.get("labels")).unwrap_or_default();

        let existing = sqlx::query("SELECT uid FROM objects WHERE namespace = $1 AND kind = 'Device' AND name = $2 FOR UPDATE")
            .bind(&namespace)
            .bind(request.device_name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query("find the enrolling device"))?;
        let (uid, created) = match existing {
            Some(row) => {
                let uid = row.get::<Uuid, _>("uid");
                let enrolled = sqlx::query(
                    "SELECT enrolled_with, to_char(enrolled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS enrolled_at
                     FROM agents WHERE uid = $1",
                )
                .bind(uid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("find the enrolling device's agent"))?;
                if let Some(agent) = enrolled {
                    if bound_to.is_none() {
                        return Err(EnrollmentError::Refused(
                            EnrollmentRefusal::AlreadyEnrolled {
                                namespace,
                                device: request.device_name.to_owned(),
                                enrolled_at: agent.get("enrolled_at"),
                                enrolled_with: agent.get("enrolled_with"),
                            },
                        ));
                    }
                    // Delivered at commit: every replica drops the replaced credentials.
                    sqlx::query("SELECT pg_notify($1, $2::text)")
                        .bind(REVOKED_CHANNEL)
                        .bind(uid)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::query("announce a re-enrollment"))?;
                }
                (uid, false)
            }
            None => {
                let row = sqlx::query(
                    "INSERT INTO objects (namespace, kind, name, uid, labels, spec, status, managed_by, source)
                     VALUES ($1, 'Device', $2, gen_random_uuid(), $3, $4, '{\"source\": \"Agent\"}', 'agent', $5)
                     RETURNING uid",
                )
                .bind(&namespace)
                .bind(request.device_name)
                .bind(json!(labels))
                .bind(&request.default_spec)
                .bind(format!("enrollment token {namespace}/{token_name}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query("create the enrolling device"))?;
                (row.get::<Uuid, _>("uid"), true)
            }
        };

        let credentials = issue(uid, &namespace).map_err(EnrollmentError::Credentials)?;
        let (auth, jwt_key, serial, expiry) = match &credentials {
            AgentCredentials::Certificate { serial, expiry } => (
                "mtls",
                None,
                Some(serial.as_str()),
                Some(expiry.to_string()),
            ),
            AgentCredentials::Jwt { public_key } => {
                ("jwt", Some(public_key.as_slice()), None, None)
            }
        };
        // A device recreated under the same name has a new uid; the old identity goes.
        sqlx::query("DELETE FROM agents WHERE namespace = $1 AND name = $2 AND uid <> $3")
            .bind(&namespace)
            .bind(request.device_name)
            .bind(uid)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("replace an earlier agent identity"))?;
        sqlx::query(
            "INSERT INTO agents (uid, namespace, name, auth, jwt_public_key, certificate_serial, certificate_expiry, agent_version, enrolled_with)
             VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8, $9)
             ON CONFLICT (uid) DO UPDATE SET auth = EXCLUDED.auth, jwt_public_key = EXCLUDED.jwt_public_key,
                 certificate_serial = EXCLUDED.certificate_serial, previous_certificate_serial = NULL,
                 certificate_expiry = EXCLUDED.certificate_expiry,
                 agent_version = EXCLUDED.agent_version, enrolled_with = EXCLUDED.enrolled_with, enrolled_at = now()",
        )
        .bind(uid)
        .bind(&namespace)
        .bind(request.device_name)
        .bind(auth)
        .bind(jwt_key)
        .bind(serial)
        .bind(&expiry)
        .bind(request.agent_version)
        .bind(format!("{namespace}/{token_name}"))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record the agent"))?;
        let agent = json!({ "agent": { "id": uid, "version": request.agent_version, "certificateExpiry": expiry } });
        sqlx::query(
            "UPDATE objects SET status = status || $4, resource_version = nextval('object_resource_version')
             WHERE namespace = $1 AND kind = 'Device' AND name = $2 AND uid = $3",
        )
        .bind(&namespace)
        .bind(request.device_name)
        .bind(uid)
        .bind(agent)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("mark the device enrolled"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit enrollment"))?;
        Ok(Enrolled {
            namespace,
            device_name: request.device_name.to_owned(),
            device_uid: uid,
            created,
        })
    }

    async fn why_refused(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        hash: &[u8; 32],
    ) -> Result<EnrollmentRefusal, StoreError> {
        let row = sqlx::query(
            "SELECT namespace, name, max_uses, expires_at <= now() AS expired,
                    to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS expires
             FROM enrollment_tokens WHERE token_sha256 = $1",
        )
        .bind(hash.as_slice())
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::query("look up an enrollment token"))?;
        Ok(match row {
            None => EnrollmentRefusal::UnknownToken,
            Some(row) if row.get::<Option<bool>, _>("expired") == Some(true) => {
                EnrollmentRefusal::Expired {
                    namespace: row.get("namespace"),
                    name: row.get("name"),
                    expired: row.get::<Option<String>, _>("expires").unwrap_or_default(),
                }
            }
            Some(row) => EnrollmentRefusal::Exhausted {
                namespace: row.get("namespace"),
                name: row.get("name"),
                max_uses: row.get("max_uses"),
            },
        })
    }

    /// The agent with this uid, if its Device still exists (deleting the Device revokes it).
    pub async fn agent(&self, uid: Uuid) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT a.namespace, a.name, a.jwt_public_key, a.certificate_serial, a.previous_certificate_serial FROM agents a
             JOIN objects o ON o.kind = 'Device' AND o.namespace = a.namespace AND o.name = a.name AND o.uid = a.uid
             WHERE a.uid = $1",
        )
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("look up an agent"))?;
        Ok(row.map(|row| AgentRecord {
            namespace: row.get("namespace"),
            name: row.get("name"),
            uid,
            jwt_public_key: row.get("jwt_public_key"),
            certificate_serial: row.get("certificate_serial"),
            previous_certificate_serial: row.get("previous_certificate_serial"),
        }))
    }

    /// The agent presented its renewed certificate: the one before it stops working.
    pub async fn forget_previous_certificate(&self, uid: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET previous_certificate_serial = NULL WHERE uid = $1")
            .bind(uid)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(
                "forget a renewed agent's previous certificate",
            ))?;
        Ok(())
    }

    /// Records a renewed certificate. The certificate the agent presented to renew stays
    /// valid until the agent first uses the new one, so a lost answer does not lock it out.
    pub async fn renew_agent_certificate(
        &self,
        uid: Uuid,
        presented_serial: &str,
        serial: &str,
        expiry: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let expiry = expiry.to_string();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin renewal"))?;
        sqlx::query(
            "UPDATE agents SET previous_certificate_serial = $4,
                 certificate_serial = $2, certificate_expiry = $3::timestamptz WHERE uid = $1",
        )
        .bind(uid)
        .bind(serial)
        .bind(&expiry)
        .bind(presented_serial)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record a renewed certificate"))?;
        sqlx::query(
            "UPDATE objects SET status = jsonb_set(status, '{agent,certificateExpiry}', to_jsonb($2::text)),
                                resource_version = nextval('object_resource_version')
             WHERE kind = 'Device' AND uid = $1 AND status ? 'agent'",
        )
        .bind(uid)
        .bind(&expiry)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record a renewed certificate"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit renewal"))?;
        Ok(())
    }
}
