//! Patching's tables (migrations 0016 and 0018): each device's latest scan and its updates,
//! the namespace's catalogue of distinct updates, the state of every package version sent
//! to a device, rollouts ring by ring and their halts, and the work reports already applied.
use std::collections::HashMap;

use cdot_crds::{
    patch_policy::Classification,
    wire::patch::{PatchProgress, PatchScan, PatchState},
};
use jiff::Timestamp;
use sqlx::Row;
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// A device's latest scan, without its updates.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRow {
    pub scanned_at: Timestamp,
    pub problem: Option<String>,
    pub installed_packages: u32,
    pub reboot_required: bool,
}

/// One update a device's latest scan offers.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRow {
    pub device: Uuid,
    pub name: String,
    pub from: String,
    pub to: String,
    pub classification: Classification,
    pub reboot_required: bool,
    /// First reported by any device of the namespace.
    pub first_seen: Timestamp,
}

/// The latest state of one package version on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallRow {
    pub device: Uuid,
    pub name: String,
    pub version: String,
    pub policy: String,
    pub state: PatchState,
    pub opening: Option<Timestamp>,
    pub attempts: i32,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A rollout: (policy, package name, version).
pub type RolloutKey = (String, String, String);

/// Why and since when a rollout is halted.
#[derive(Debug, Clone, PartialEq)]
pub struct Halt {
    /// The ring whose failures or alerts halted it.
    pub ring: usize,
    /// The policy generation it was halted under; a newer one lifts it.
    pub generation: i64,
    pub reason: String,
    pub since: Timestamp,
}

/// Everything patching keeps about one namespace.
#[derive(Debug, Default)]
pub struct NamespaceState {
    pub scans: HashMap<Uuid, ScanRow>,
    pub updates: Vec<UpdateRow>,
    pub installs: Vec<InstallRow>,
    /// Open times of each rollout's rings, in ring order.
    pub rollouts: HashMap<RolloutKey, Vec<Timestamp>>,
    /// Halts by (policy, name, version).
    pub halts: HashMap<RolloutKey, Halt>,
}

/// An update's id in its namespace's catalogue (`patch_catalogue`, migration 0018).
pub type UpdateId = i32;

/// A device's latest scan with its updates as catalogue ids.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedScan {
    pub scan: ScanRow,
    pub updates: Vec<UpdateId>,
}

/// One distinct update offered in a namespace: an entry of its catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: UpdateId,
    pub name: String,
    pub to: String,
    pub classification: Classification,
    pub first_seen: Timestamp,
}

/// A firing (or since resolved) alert: when it fired, on which device, of which rule.
#[derive(Debug, Clone)]
pub struct FiredAlert {
    pub device: Uuid,
    pub rule: String,
    pub device_name: String,
    pub fired_at: Timestamp,
}

fn scan_row(row: &sqlx::postgres::PgRow) -> ScanRow {
    ScanRow {
        scanned_at: ts(row.get("scanned_at")),
        problem: row.get("problem"),
        installed_packages: u32::try_from(row.get::<i32, _>("installed_packages")).unwrap_or(0),
        reboot_required: row.get("reboot_required"),
    }
}

/// Held shared while a scan is stored and exclusively while the catalogue is pruned, so
/// that no entry is pruned between a scan looking up its id and committing it.
const CATALOGUE_LOCK: i64 = 0x6364_6f74_7063_6174;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Bound as `to_timestamp($n::float8 / 1000)`.
fn sql(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// `column` read as Unix milliseconds.
macro_rules! ms {
    ($col:literal) => {
        concat!("(extract(epoch FROM ", $col, ") * 1000)::int8 AS ", $col)
    };
}

pub fn classification_name(c: Classification) -> &'static str {
    match c {
        Classification::Security => "security",
        Classification::Critical => "critical",
        Classification::Bugfix => "bugfix",
        Classification::Feature => "feature",
        Classification::ThirdParty => "thirdParty",
    }
}

pub fn classification_from(s: &str) -> Option<Classification> {
    Some(match s {
        "security" => Classification::Security,
        "critical" => Classification::Critical,
        "bugfix" => Classification::Bugfix,
        "feature" => Classification::Feature,
        "thirdParty" => Classification::ThirdParty,
        _ => return None,
    })
}

impl Store {
    /// Replaces `device`'s scan and its updates. Each update is entered in the namespace's
    /// catalogue unless it is there: a version already there keeps its `first_seen`, a new
    /// classification of a known version takes the version's, anything else is first seen
    /// `now`. The update rows take their entry's `first_seen`, and the scan keeps its
    /// updates as catalogue ids (what the compliance report counts over).
    pub async fn put_patch_scan(
        &self,
        device: Uuid,
        namespace: &str,
        scan: &PatchScan,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let scanned = Timestamp::from_millisecond(scan.scanned_at_ms).unwrap_or(now);
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin patch scan"))?;
        sqlx::query(
            "INSERT INTO patch_scans (device_uid, namespace, scanned_at, received_at, backend, problem, installed_packages, reboot_required)
             VALUES ($1, $2, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000), $5, $6, $7, $8)
             ON CONFLICT (device_uid) DO UPDATE SET namespace = EXCLUDED.namespace, scanned_at = EXCLUDED.scanned_at,
                 received_at = EXCLUDED.received_at, backend = EXCLUDED.backend, problem = EXCLUDED.problem,
                 installed_packages = EXCLUDED.installed_packages, reboot_required = EXCLUDED.reboot_required",
        )
        .bind(device)
        .bind(namespace)
        .bind(sql(scanned))
        .bind(sql(now))
        .bind(scan.backend.map(|b| format!("{b:?}").to_lowercase()))
        .bind(scan.problem.as_deref())
        .bind(i32::try_from(scan.installed_packages).unwrap_or(i32::MAX))
        .bind(scan.reboot_required)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("store patch scan"))?;
        let names: Vec<&str> = scan.updates.iter().map(|u| u.name.as_str()).collect();
        let froms: Vec<&str> = scan.updates.iter().map(|u| u.from.as_str()).collect();
        let tos: Vec<&str> = scan.updates.iter().map(|u| u.to.as_str()).collect();
        let classes: Vec<&str> = scan
            .updates
            .iter()
            .map(|u| classification_name(u.classification))
            .collect();
        let sources: Vec<&str> = scan.updates.iter().map(|u| u.source.as_str()).collect();
        let sizes: Vec<Option<i64>> = scan
            .updates
            .iter()
            .map(|u| u.size_bytes.and_then(|s| i64::try_from(s).ok()))
            .collect();
        let reboots: Vec<bool> = scan.updates.iter().map(|u| u.reboot_required).collect();
        // Until the commit no pruning can remove an entry this scan refers to.
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(CATALOGUE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("lock the patch catalogue"))?;
        // Only what is missing is inserted (an attempted insert would use up an id), in key
        // order so that two scans entering the same updates wait on each other, not deadlock.
        sqlx::query(
            "INSERT INTO patch_catalogue (namespace, name, to_version, classification, first_seen)
             SELECT $1, n.name, n.to_version, n.classification,
                    COALESCE((SELECT min(c.first_seen) FROM patch_catalogue c
                              WHERE c.namespace = $1 AND c.name = n.name AND c.to_version = n.to_version),
                             to_timestamp($5::float8 / 1000))
             FROM unnest($2::text[], $3::text[], $4::text[]) AS n(name, to_version, classification)
             WHERE NOT EXISTS (SELECT 1 FROM patch_catalogue c WHERE c.namespace = $1 AND c.name = n.name
                               AND c.to_version = n.to_version AND c.classification = n.classification)
             ORDER BY 2, 3, 4
             ON CONFLICT DO NOTHING",
        )
        .bind(namespace)
        .bind(&names)
        .bind(&tos)
        .bind(&classes)
        .bind(sql(now))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("enter updates in the patch catalogue"))?;
        let stored = sqlx::query(
            "WITH new AS (
                 SELECT n.*, c.id, c.first_seen
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[], $9::bool[])
                     WITH ORDINALITY AS n(name, from_version, to_version, classification, source, size_bytes, reboot_required, ord)
                 JOIN patch_catalogue c ON c.namespace = $2 AND c.name = n.name AND c.to_version = n.to_version
                     AND c.classification = n.classification
             ), ids AS (
                 UPDATE patch_scans SET update_ids = ARRAY(SELECT id FROM new ORDER BY ord) WHERE device_uid = $1
             ), gone AS (
                 DELETE FROM patch_updates p WHERE p.device_uid = $1
                     AND NOT EXISTS (SELECT 1 FROM new WHERE new.name = p.name AND new.to_version = p.to_version)
             )
             INSERT INTO patch_updates (device_uid, name, from_version, to_version, classification, source, size_bytes, reboot_required, first_seen)
             SELECT $1, name, from_version, to_version, classification, source, size_bytes, reboot_required, first_seen
             FROM new
             ON CONFLICT (device_uid, name) DO UPDATE SET from_version = EXCLUDED.from_version,
                 to_version = EXCLUDED.to_version, classification = EXCLUDED.classification, source = EXCLUDED.source,
                 size_bytes = EXCLUDED.size_bytes, reboot_required = EXCLUDED.reboot_required,
                 first_seen = EXCLUDED.first_seen",
        )
        .bind(device)
        .bind(namespace)
        .bind(&names)
        .bind(&froms)
        .bind(&tos)
        .bind(&classes)
        .bind(&sources)
        .bind(&sizes)
        .bind(&reboots)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("store patch updates"))?
        .rows_affected();
        if stored != scan.updates.len() as u64 {
            return Err(StoreError::Query {
                operation: "store patch updates",
                source: sqlx::Error::Protocol(format!(
                    "{stored} of the {} updates of device {device}'s scan found in the patch catalogue",
                    scan.updates.len()
                )),
            });
        }
        tx.commit()
            .await
            .map_err(StoreError::query("commit patch scan"))
    }

    /// Everything patching decides from in `namespace`; with `device`, only that device's
    /// scan, updates and installs (rollouts and halts are always the namespace's).
    pub async fn patch_namespace(
        &self,
        namespace: &str,
        device: Option<Uuid>,
    ) -> Result<NamespaceState, StoreError> {
        let mut state = NamespaceState {
            scans: self.patch_namespace_scans(namespace, device).await?,
            ..NamespaceState::default()
        };
        state.updates = sqlx::query(
            "SELECT u.device_uid, u.name, u.from_version, u.to_version, u.classification, u.reboot_required,
                    (extract(epoch FROM u.first_seen) * 1000)::int8 AS first_seen
             FROM patch_updates u JOIN patch_scans s USING (device_uid)
             WHERE s.namespace = $1 AND ($2::uuid IS NULL OR u.device_uid = $2)",
        )
        .bind(namespace)
        .bind(device)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch updates"))?
        .iter()
        .filter_map(|row| {
            Some(UpdateRow {
                device: row.get("device_uid"),
                name: row.get("name"),
                from: row.get("from_version"),
                to: row.get("to_version"),
                classification: classification_from(row.get("classification"))?,
                reboot_required: row.get("reboot_required"),
                first_seen: ts(row.get("first_seen")),
            })
        })
        .collect();
        state.installs = sqlx::query(concat!(
            "SELECT device_uid, name, version, policy, state, attempts, ",
            ms!("opening"),
            ", ",
            ms!("updated_at"),
            ", ",
            ms!("finished_at"),
            " FROM patch_installs WHERE namespace = $1 AND ($2::uuid IS NULL OR device_uid = $2)"
        ))
        .bind(namespace)
        .bind(device)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch installs"))?
        .iter()
        .filter_map(|row| {
            Some(InstallRow {
                device: row.get("device_uid"),
                name: row.get("name"),
                version: row.get("version"),
                policy: row.get("policy"),
                state: PatchState::from_name(row.get("state"))?,
                opening: row.get::<Option<i64>, _>("opening").map(ts),
                attempts: row.get("attempts"),
                updated_at: ts(row.get("updated_at")),
                finished_at: row.get::<Option<i64>, _>("finished_at").map(ts),
            })
        })
        .collect();
        for row in sqlx::query(concat!(
            "SELECT policy, name, version, ring, ",
            ms!("opened_at"),
            " FROM patch_rollouts WHERE namespace = $1 ORDER BY ring"
        ))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch rollouts"))?
        {
            state
                .rollouts
                .entry((row.get("policy"), row.get("name"), row.get("version")))
                .or_default()
                .push(ts(row.get("opened_at")));
        }
        for row in sqlx::query(concat!(
            "SELECT policy, name, version, ring, generation, reason, ",
            ms!("halted_at"),
            " FROM patch_halts WHERE namespace = $1"
        ))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch halts"))?
        {
            state.halts.insert(
                (row.get("policy"), row.get("name"), row.get("version")),
                Halt {
                    ring: usize::try_from(row.get::<i32, _>("ring")).unwrap_or(0),
                    generation: row.get("generation"),
                    reason: row.get("reason"),
                    since: ts(row.get("halted_at")),
                },
            );
        }
        Ok(state)
    }

    /// The scans of `namespace`, by device.
    pub async fn patch_scans(&self, namespace: &str) -> Result<HashMap<Uuid, ScanRow>, StoreError> {
        self.patch_namespace_scans(namespace, None).await
    }

    async fn patch_namespace_scans(
        &self,
        namespace: &str,
        device: Option<Uuid>,
    ) -> Result<HashMap<Uuid, ScanRow>, StoreError> {
        let mut scans = HashMap::new();
        for row in sqlx::query(concat!(
            "SELECT device_uid, ",
            ms!("scanned_at"),
            ", problem, installed_packages, reboot_required FROM patch_scans
                     WHERE namespace = $1 AND ($2::uuid IS NULL OR device_uid = $2)"
        ))
        .bind(namespace)
        .bind(device)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch scans"))?
        {
            scans.insert(row.get("device_uid"), scan_row(&row));
        }
        Ok(scans)
    }

    /// The scans of `namespace` with their updates as catalogue ids, by device: what the
    /// compliance report counts over (10,000 arrays of ids rather than 500,000 rows).
    pub async fn patch_offered(
        &self,
        namespace: &str,
    ) -> Result<HashMap<Uuid, OfferedScan>, StoreError> {
        let mut scans = HashMap::new();
        for row in sqlx::query(concat!(
            "SELECT device_uid, ",
            ms!("scanned_at"),
            ", problem, installed_packages, reboot_required, update_ids FROM patch_scans WHERE namespace = $1"
        ))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch scans"))?
        {
            scans.insert(
                row.get("device_uid"),
                OfferedScan {
                    scan: scan_row(&row),
                    updates: row.get("update_ids"),
                },
            );
        }
        Ok(scans)
    }

    /// The catalogue of `namespace`: each distinct update (name, version, classification,
    /// first sighting) once, a few thousand rows however many devices offer them. It may
    /// hold entries no scan offers any more (until the next pruning).
    pub async fn patch_candidates(&self, namespace: &str) -> Result<Vec<Candidate>, StoreError> {
        Ok(sqlx::query(concat!(
            "SELECT id, name, to_version, classification, ",
            ms!("first_seen"),
            " FROM patch_catalogue WHERE namespace = $1"
        ))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read patch candidates"))?
        .iter()
        .filter_map(|row| {
            Some(Candidate {
                id: row.get("id"),
                name: row.get("name"),
                to: row.get("to_version"),
                classification: classification_from(row.get("classification"))?,
                first_seen: ts(row.get("first_seen")),
            })
        })
        .collect())
    }

    /// Which devices of `namespace` have installed which versions of its catalogue, as
    /// (device, entry): such an update is not missing.
    pub async fn patch_installed(
        &self,
        namespace: &str,
    ) -> Result<Vec<(Uuid, UpdateId)>, StoreError> {
        Ok(sqlx::query(
            "SELECT i.device_uid, c.id FROM patch_catalogue c
             JOIN patch_installs i ON i.namespace = c.namespace AND i.name = c.name
                 AND i.version = c.to_version AND i.state = 'installed'
             WHERE c.namespace = $1",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read installed updates"))?
        .iter()
        .map(|row| (row.get("device_uid"), row.get("id")))
        .collect())
    }

    /// Per device of `namespace`: packages whose latest install failed, and when an install
    /// last succeeded.
    pub async fn patch_install_totals(
        &self,
        namespace: &str,
    ) -> Result<HashMap<Uuid, (u32, Option<Timestamp>)>, StoreError> {
        Ok(sqlx::query(concat!(
            "SELECT device_uid, count(*) FILTER (WHERE state = 'failed') AS failed, ",
            "(extract(epoch FROM max(finished_at) FILTER (WHERE state = 'installed')) * 1000)::int8 AS last_success ",
            "FROM patch_installs WHERE namespace = $1 GROUP BY 1"
        ))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("count patch installs"))?
        .iter()
        .map(|row| {
            (
                row.get("device_uid"),
                (
                    u32::try_from(row.get::<i64, _>("failed")).unwrap_or(u32::MAX),
                    row.get::<Option<i64>, _>("last_success").map(ts),
                ),
            )
        })
        .collect())
    }

    /// Alerts of `namespace` that fired at or after `since`.
    pub async fn alerts_fired_since(
        &self,
        namespace: &str,
        since: Timestamp,
    ) -> Result<Vec<FiredAlert>, StoreError> {
        Ok(sqlx::query(
            concat!("SELECT device_uid, device, rule, ", ms!("fired_at"), " FROM alerts
             WHERE namespace = $1 AND fired_at IS NOT NULL AND fired_at >= to_timestamp($2::float8 / 1000)"),
        )
        .bind(namespace)
        .bind(sql(since))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read alerts fired since a rollout"))?
        .iter()
        .map(|row| FiredAlert {
            device: row.get("device_uid"),
            device_name: row.get("device"),
            rule: row.get("rule"),
            fired_at: ts(row.get("fired_at")),
        })
        .collect())
    }

    /// Records that ring `ring` of a rollout opened at `at`.
    pub async fn open_ring(
        &self,
        namespace: &str,
        policy: &str,
        name: &str,
        version: &str,
        ring: usize,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO patch_rollouts (namespace, policy, name, version, ring, opened_at)
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000)) ON CONFLICT DO NOTHING",
        )
        .bind(namespace)
        .bind(policy)
        .bind(name)
        .bind(version)
        .bind(i32::try_from(ring).unwrap_or(i32::MAX))
        .bind(sql(at))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("open a rollout ring"))?;
        Ok(())
    }

    /// Halts a rollout until the policy's generation moves past `generation`.
    #[allow(clippy::too_many_arguments)]
    pub async fn halt_rollout(
        &self,
        namespace: &str,
        policy: &str,
        name: &str,
        version: &str,
        ring: usize,
        generation: i64,
        reason: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO patch_halts (namespace, policy, name, version, ring, generation, reason, halted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::float8 / 1000))
             ON CONFLICT (namespace, policy, name, version) DO UPDATE SET ring = EXCLUDED.ring,
                 generation = EXCLUDED.generation, reason = EXCLUDED.reason, halted_at = EXCLUDED.halted_at",
        )
        .bind(namespace)
        .bind(policy)
        .bind(name)
        .bind(version)
        .bind(i32::try_from(ring).unwrap_or(i32::MAX))
        .bind(generation)
        .bind(reason)
        .bind(sql(at))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("halt a rollout"))?;
        Ok(())
    }

    /// Lifts the halts of `policy` recorded under an older generation (a commit changed it).
    pub async fn lift_halts(
        &self,
        namespace: &str,
        policy: &str,
        generation: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM patch_halts WHERE namespace = $1 AND policy = $2 AND generation < $3",
        )
        .bind(namespace)
        .bind(policy)
        .bind(generation)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("lift rollout halts"))?
        .rows_affected())
    }

    /// Applies one work report in one transaction: `false` when `report_id` was applied
    /// before (nothing is written again).
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_work_report(
        &self,
        device: Uuid,
        namespace: &str,
        report_id: Uuid,
        item: Uuid,
        policy: Option<(&str, &str, Option<Timestamp>)>,
        progress: &[PatchProgress],
        done: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin work report"))?;
        let fresh = sqlx::query(
            "INSERT INTO work_reports (report_id, device_uid, item, received_at) VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000))
             ON CONFLICT DO NOTHING",
        )
        .bind(report_id)
        .bind(device)
        .bind(item)
        .bind(sql(now))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record work report"))?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(false);
        }
        if let Some((policy, ring, opening)) = policy {
            for p in progress {
                let at = Timestamp::from_millisecond(p.at_ms).unwrap_or(now);
                let terminal = matches!(
                    p.state,
                    PatchState::Installed | PatchState::Failed | PatchState::Skipped
                );
                let retry = matches!(p.state, PatchState::Failed | PatchState::Skipped);
                sqlx::query(
                    "INSERT INTO patch_installs (device_uid, namespace, name, version, policy, ring, state, exit_code,
                         detail, log_tail, opening, attempts, updated_at, finished_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11::float8 / 1000), $12,
                             to_timestamp($13::float8 / 1000), to_timestamp($14::float8 / 1000))
                     ON CONFLICT (device_uid, name, version) DO UPDATE SET policy = EXCLUDED.policy, ring = EXCLUDED.ring,
                         state = EXCLUDED.state, exit_code = EXCLUDED.exit_code, detail = EXCLUDED.detail,
                         log_tail = EXCLUDED.log_tail, opening = EXCLUDED.opening,
                         attempts = patch_installs.attempts + EXCLUDED.attempts,
                         updated_at = EXCLUDED.updated_at, finished_at = EXCLUDED.finished_at
                     WHERE patch_installs.updated_at <= EXCLUDED.updated_at",
                )
                .bind(device)
                .bind(namespace)
                .bind(&p.name)
                .bind(&p.version)
                .bind(policy)
                .bind(ring)
                .bind(p.state.as_str())
                .bind(p.exit_code)
                .bind(p.detail.as_deref())
                .bind(p.log_tail.as_deref())
                .bind(opening.map(sql))
                .bind(i32::from(retry))
                .bind(sql(at))
                .bind(terminal.then(|| sql(at)))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("store patch progress"))?;
            }
        }
        if done {
            sqlx::query(
                "INSERT INTO work_done (device_uid, item, done_at) VALUES ($1, $2, to_timestamp($3::float8 / 1000)) ON CONFLICT DO NOTHING",
            )
            .bind(device)
            .bind(item)
            .bind(sql(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("record work done"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("commit work report"))?;
        Ok(true)
    }

    /// The policy and ring a package version of `device` was last installed under.
    pub async fn patch_install_owner(
        &self,
        device: Uuid,
        name: &str,
        version: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT policy, ring FROM patch_installs WHERE device_uid = $1 AND name = $2 AND version = $3",
        )
        .bind(device)
        .bind(name)
        .bind(version)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query("read a patch install"))?;
        Ok(row.map(|r| (r.get("policy"), r.get("ring"))))
    }

    /// Items `device` finished.
    pub async fn work_done(&self, device: Uuid) -> Result<Vec<Uuid>, StoreError> {
        sqlx::query_scalar("SELECT item FROM work_done WHERE device_uid = $1")
            .bind(device)
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("read finished work"))
    }

    /// Forgets reports received before `before` (a retry older than that is not expected,
    /// see `engine::REPORT_DEDUPE`) and the catalogue entries no scan offers any more;
    /// returns how many reports.
    pub async fn prune_work(&self, before: Timestamp) -> Result<u64, StoreError> {
        let reports = sqlx::query(
            "DELETE FROM work_reports WHERE received_at < to_timestamp($1::float8 / 1000)",
        )
        .bind(sql(before))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("prune work reports"))?
        .rows_affected();
        self.prune_patch_catalogue().await?;
        Ok(reports)
    }

    /// Removes the catalogue entries no scan refers to (an update every device installed):
    /// a version offered again later is first seen again. Scans being stored wait meanwhile.
    pub async fn prune_patch_catalogue(&self) -> Result<u64, StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin pruning the patch catalogue"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CATALOGUE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("lock the patch catalogue"))?;
        let pruned = sqlx::query(
            "WITH used AS (SELECT DISTINCT unnest(update_ids) AS id FROM patch_scans)
             DELETE FROM patch_catalogue c WHERE NOT EXISTS (SELECT 1 FROM used WHERE used.id = c.id)",
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("prune the patch catalogue"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("commit pruning the patch catalogue"))?;
        Ok(pruned)
    }
}
