//! `cdot-patch-compliance-bench`: how long `GET /v1/namespaces/{ns}/patches/compliance`
//! takes over 10,000 devices with 50 available updates each (the patching issue asks for
//! a p99 under 500 ms).
//!
//! Devices and the PatchPolicy are stored as a manifest load stores them
//! (`Store::apply_manifests`); every device's scan goes through `Store::put_patch_scan`,
//! as the agent's `PUT /v1/agent/patches` does, and the install history of one device in
//! ten through `Store::apply_work_report`, as its work reports do. Updates are drawn from
//! a catalogue of about 800 Debian packages (real names, then generated ones), about 30 %
//! security, 60 % bugfix and 10 % third-party; 5 % of the devices only lack updates the
//! policy does not approve, so they count as compliant.
//!
//! Reports go through the operator's router in-process (token check, query, index
//! snapshot, SQL, report, encoding), each variant `--runs` times after two warm-up runs.
//! The report's phases (`compliance::facts`: SQL and decisions; `compliance::report`;
//! JSON encoding) are then timed apart by calling the same functions the route calls, and
//! `compliance::facts` apart again through the store functions it calls.
use std::{collections::BTreeMap, sync::Arc, time::Duration, time::Instant};

use anyhow::{Context, bail};
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use cdot_crds::{
    SITE_LABEL,
    api_token::{ApiToken, Role, hash_token},
    device::DeviceSpec,
    kind::Kind,
    patch_policy::Classification,
    wire::patch::{
        AvailableUpdate, ComplianceReport, Decision, PatchBackend, PatchPlan, PatchProgress,
        PatchScan, PatchState,
    },
};
use cdot_operator::{
    api::{self, AppState, TokenIndex},
    metrics::Metrics,
    patching::{compliance, work},
    store::{DesiredObject, Store},
};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::index::sample};
use sqlx::Connection;
use tower::ServiceExt;

/// The operator's binary runs on mimalloc; the in-process figures should match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACE: &str = "acme";
const POLICY: &str = "servers";
const SITES: usize = 20;
/// Scans and work reports written at once.
const WRITERS: usize = 8;
const WARMUP: usize = 2;
const TARGET_MS: f64 = 500.0;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Parser)]
#[command(
    name = "cdot-patch-compliance-bench",
    about = "Patch compliance report time over 10,000 devices with 50 updates each"
)]
struct Args {
    /// PostgreSQL server URL with a role that may create databases; a fresh database is
    /// created on it (and dropped at the end unless --keep).
    #[arg(long, env = "CDOT_TEST_DATABASE_URL")]
    admin_url: String,
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Available updates per device.
    #[arg(long, default_value_t = 50)]
    packages: usize,
    /// Timed requests of each compliance variant (after two warm-up requests).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Timed requests of the policy's plan.
    #[arg(long, default_value_t = 10)]
    plan_runs: usize,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
    /// Measure again on a database kept by an earlier run (--keep) instead of loading one.
    #[arg(long)]
    reuse: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args
        .admin_url
        .rsplit_once('/')
        .map_or(args.admin_url.as_str(), |(base, _)| base)
        .to_owned();
    if let Some(name) = &args.reuse {
        let store = Store::connect(&format!("{base}/{name}"), 16).await?;
        return measure(&args, &store).await;
    }
    let name = format!("cdot_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&args.admin_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", args.admin_url))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let result = async {
        let store = Store::connect(&format!("{base}/{name}"), 16).await?;
        load(&args, &store).await?;
        measure(&args, &store).await
    }
    .await;
    if args.keep {
        println!("kept database {name} (measure again with --reuse {name})");
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
    }
    result
}

/// Real package names of a Debian 12 server; the catalogue is filled up with made-up ones.
const DEBIAN: &[&str] = &[
    "libssl3",
    "openssl",
    "curl",
    "libcurl4",
    "libcurl3-gnutls",
    "bash",
    "tzdata",
    "linux-image-amd64",
    "linux-image-6.1.0-28-amd64",
    "libc6",
    "libc-bin",
    "locales",
    "systemd",
    "systemd-sysv",
    "libsystemd0",
    "libudev1",
    "udev",
    "openssh-server",
    "openssh-client",
    "openssh-sftp-server",
    "sudo",
    "coreutils",
    "util-linux",
    "mount",
    "libmount1",
    "libblkid1",
    "e2fsprogs",
    "dpkg",
    "apt",
    "libapt-pkg6.0",
    "gnupg",
    "gpgv",
    "ca-certificates",
    "wget",
    "git",
    "git-man",
    "vim",
    "vim-common",
    "vim-tiny",
    "nano",
    "less",
    "rsync",
    "tar",
    "gzip",
    "xz-utils",
    "liblzma5",
    "zlib1g",
    "libzstd1",
    "bzip2",
    "libbz2-1.0",
    "libxml2",
    "libxslt1.1",
    "libexpat1",
    "libsqlite3-0",
    "libpq5",
    "postgresql-13",
    "postgresql-15",
    "postgresql-16",
    "postgresql-client-15",
    "postgresql-common",
    "nginx",
    "nginx-common",
    "apache2",
    "apache2-bin",
    "libapache2-mod-php8.2",
    "php8.2-cli",
    "php8.2-common",
    "python3",
    "python3.11",
    "libpython3.11",
    "python3-urllib3",
    "python3-requests",
    "python3-cryptography",
    "perl",
    "perl-base",
    "libperl5.36",
    "bind9-host",
    "bind9-libs",
    "dnsutils",
    "libkrb5-3",
    "libgssapi-krb5-2",
    "krb5-locales",
    "libpam-modules",
    "libpam0g",
    "passwd",
    "login",
    "cron",
    "rsyslog",
    "logrotate",
    "iproute2",
    "iptables",
    "nftables",
    "libnftables1",
    "isc-dhcp-client",
    "ntpsec",
    "chrony",
    "intel-microcode",
    "amd64-microcode",
    "firmware-linux-free",
    "grub-pc",
    "grub-common",
    "libgnutls30",
    "libgcrypt20",
    "libnss3",
    "libldap-2.5-0",
    "libsasl2-2",
    "libtiff6",
    "libpng16-16",
    "libjpeg62-turbo",
    "libwebp7",
    "libfreetype6",
    "fontconfig",
    "libx11-6",
    "libglib2.0-0",
    "libdbus-1-3",
    "dbus",
    "polkitd",
    "libpolkit-gobject-1-0",
    "unattended-upgrades",
    "needrestart",
    "openjdk-17-jre-headless",
    "ruby3.1",
    "libruby3.1",
    "nodejs",
    "redis-server",
    "redis-tools",
    "mariadb-server",
    "mariadb-client",
    "samba-libs",
    "libsmbclient",
    "cifs-utils",
    "nfs-common",
    "libtirpc3",
    "sqlite3",
    "libsnmp40",
    "snmpd",
    "haproxy",
    "squid",
    "exim4-base",
    "exim4-daemon-light",
    "postfix",
    "libpcre2-8-0",
    "libtasn1-6",
    "libidn2-0",
    "libnghttp2-14",
    "libssh2-1",
    "librtmp1",
];

/// Third-party packages (an origin other than Debian's).
const THIRD_PARTY: &[&str] = &[
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-compose-plugin",
    "google-chrome-stable",
    "code",
    "grafana",
    "prometheus-node-exporter-vendor",
    "zabbix-agent2",
    "elasticsearch",
    "kibana",
    "filebeat",
    "teleport",
    "tailscale",
    "1password-cli",
    "gitlab-runner",
    "powershell",
    "dotnet-runtime-8.0",
    "msodbcsql18",
    "mongodb-org-server",
];

/// Stems and prefixes of the made-up names that fill the catalogue.
const PREFIXES: &[&str] = &[
    "lib", "lib", "lib", "python3-", "node-", "fonts-", "golang-",
];
const STEMS: &[&str] = &[
    "foo", "bar", "xml", "gtk", "net", "sql", "img", "audio", "crypt", "http", "yaml", "json",
];

/// One update the catalogue offers; every device that lacks it reports the same versions.
struct Package {
    name: String,
    from: String,
    to: String,
    classification: Classification,
    source: &'static str,
    size: u64,
    reboot: bool,
}

impl Package {
    fn update(&self) -> AvailableUpdate {
        AvailableUpdate {
            name: self.name.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            classification: self.classification,
            source: self.source.to_owned(),
            size_bytes: Some(self.size),
            reboot_required: self.reboot,
        }
    }

    /// Something the policy below neither installs nor denies: a device lacking only such
    /// updates is compliant.
    fn unapproved(&self) -> bool {
        self.classification != Classification::Security
            && !self.name.starts_with("lib")
            && !self.name.starts_with("postgresql-1")
    }
}

fn catalogue(size: usize, rng: &mut StdRng) -> Vec<Package> {
    let mut names: Vec<(String, bool)> = DEBIAN
        .iter()
        .map(|n| ((*n).to_owned(), false))
        .chain(THIRD_PARTY.iter().map(|n| ((*n).to_owned(), true)))
        .collect();
    let mut taken: std::collections::HashSet<String> =
        names.iter().map(|(n, _)| n.clone()).collect();
    let mut n = 0;
    while names.len() < size {
        let prefix = PREFIXES[n % PREFIXES.len()];
        let stem = STEMS[(n / PREFIXES.len()) % STEMS.len()];
        let name = format!("{prefix}{stem}{}", n + 1);
        if taken.insert(name.clone()) {
            names.push((name, false));
        }
        n += 1;
    }
    names
        .into_iter()
        .map(|(name, third)| {
            let classification = match rng.random_range(0..100) {
                _ if third => Classification::ThirdParty,
                0..30 => Classification::Security,
                30..92 => Classification::Bugfix,
                _ => Classification::ThirdParty,
            };
            let (major, minor, patch) = (
                rng.random_range(0..10),
                rng.random_range(0..24),
                rng.random_range(0..30),
            );
            let (from, to, source) = match classification {
                Classification::ThirdParty => (
                    format!("{major}.{minor}.{patch}-1"),
                    format!("{major}.{minor}.{}-1", patch + 1),
                    "vendor:stable/main",
                ),
                _ => {
                    let (rev, u) = (rng.random_range(1..4), rng.random_range(1..6));
                    (
                        format!("{major}.{minor}.{patch}-{rev}+deb12u{u}"),
                        format!("{major}.{minor}.{patch}-{rev}+deb12u{}", u + 1),
                        if classification == Classification::Security {
                            "Debian-Security:12/bookworm-security"
                        } else {
                            "Debian:12.8/bookworm"
                        },
                    )
                }
            };
            let reboot = name.starts_with("linux-image")
                || name.ends_with("microcode")
                || ["libc6", "systemd", "libssl3", "dbus"].contains(&name.as_str());
            Package {
                size: rng.random_range(8_000..40_000_000),
                name,
                from,
                to,
                classification,
                source,
                reboot,
            }
        })
        .collect()
}

fn site_of(i: usize) -> String {
    format!("site-{:02}", i % SITES + 1)
}

/// 5 % of the devices, spread over the sites.
fn is_pilot(i: usize) -> bool {
    (i / SITES).is_multiple_of(20)
}

/// Another 5 %: only updates the policy does not approve.
fn is_up_to_date(i: usize) -> bool {
    (i / SITES) % 20 == 3
}

/// 10 % (a few packages installed, one failed), spread over the sites.
fn has_history(i: usize) -> bool {
    (i / SITES) % 10 == 5
}

fn policy() -> serde_json::Value {
    serde_json::json!({
        "selector": {"matchLabels": {"role": "server"}},
        "classifications": ["security", "critical", "bugfix", "thirdParty"],
        "approval": {
            "rules": [{"classification": "security", "mode": "Automatic"}],
            "approve": ["^lib"],
            "deny": ["^postgresql-1[0-9]"],
        },
        "rings": [
            {"name": "pilot", "selector": {"matchLabels": {"ring": "pilot"}}, "soak": "1h"},
            {"name": "broad", "delay": "1d"},
        ],
        "installWindow": {"start": "22:00", "duration": "4h", "timeZone": "Europe/London"},
        "reboot": "IfRequired",
    })
}

/// The devices, the policy, every device's scan and some install history.
async fn load(args: &Args, store: &Store) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let now_ms = now.as_millisecond();
    let mut rng = StdRng::seed_from_u64(15);

    let started = Instant::now();
    let mut desired: Vec<DesiredObject> = (0..args.devices)
        .map(|i| {
            let site = site_of(i);
            let mut labels = BTreeMap::from([
                ("role".to_owned(), "server".to_owned()),
                (SITE_LABEL.to_owned(), site.clone()),
            ]);
            if is_pilot(i) {
                labels.insert("ring".into(), "pilot".into());
            }
            DesiredObject {
                kind: Kind::Device,
                namespace: NAMESPACE.into(),
                name: format!("srv-{i:05}"),
                labels,
                annotations: BTreeMap::new(),
                spec: serde_json::json!({"class": "Server", "site": site}),
                source: format!("{NAMESPACE}/devices.yaml#{i}"),
            }
        })
        .collect();
    desired.push(DesiredObject {
        kind: Kind::PatchPolicy,
        namespace: NAMESPACE.into(),
        name: POLICY.into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        spec: policy(),
        source: format!("{NAMESPACE}/patching.yaml#0"),
    });
    store
        .apply_manifests(&desired, &[], &[], "cdot-patch-compliance-bench")
        .await?;
    let uids: BTreeMap<String, uuid::Uuid> = store
        .objects_of_kind(Kind::Device)
        .await?
        .into_iter()
        .map(|o| (o.name, o.uid))
        .collect();
    println!(
        "stored {} devices in {} sites ({} in ring pilot) and PatchPolicy {POLICY} in {:.1} s",
        uids.len(),
        SITES,
        (0..args.devices).filter(|i| is_pilot(*i)).count(),
        started.elapsed().as_secs_f64()
    );

    let packages = catalogue(800.max(2 * args.packages), &mut rng);
    let unapproved: Vec<usize> = (0..packages.len())
        .filter(|p| packages[*p].unapproved())
        .collect();
    let mut by_class: BTreeMap<Classification, usize> = BTreeMap::new();
    for p in &packages {
        *by_class.entry(p.classification).or_default() += 1;
    }
    println!(
        "catalogue: {} packages ({}), {} neither approved nor denied",
        packages.len(),
        by_class
            .iter()
            .map(|(c, n)| format!("{n} {c:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        unapproved.len()
    );

    // Every device's scan, made first (deterministic), then written WRITERS at a time.
    let mut scans = Vec::with_capacity(args.devices);
    let mut history = Vec::new();
    for i in 0..args.devices {
        let uid = uids[&format!("srv-{i:05}")];
        let chosen: Vec<usize> = if is_up_to_date(i) && unapproved.len() >= args.packages {
            sample(&mut rng, unapproved.len(), args.packages)
                .into_iter()
                .map(|k| unapproved[k])
                .collect()
        } else {
            sample(&mut rng, packages.len(), args.packages).into_vec()
        };
        let mut updates: Vec<AvailableUpdate> =
            chosen.iter().map(|p| packages[*p].update()).collect();
        updates.sort();
        let scan = PatchScan {
            agent_version: "0.1.0".into(),
            scanned_at_ms: now_ms - rng.random_range(0..6 * 3_600_000),
            backend: Some(PatchBackend::Apt),
            problem: None,
            installed_packages: rng.random_range(400..=900),
            reboot_required: rng.random_bool(0.04),
            updates,
        };
        if has_history(i)
            && let Some(progress) = report(&scan, now_ms, &mut rng)
        {
            history.push((i, uid, progress));
        }
        scans.push((uid, scan));
    }
    let updates = scans.iter().map(|(_, s)| s.updates.len()).sum::<usize>();
    let started = Instant::now();
    stream::iter(scans.iter())
        .map(|(uid, scan)| store.put_patch_scan(*uid, NAMESPACE, scan, now))
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "patch scans: {} devices, {updates} updates written through Store::put_patch_scan in {took:.1} s ({:.0} scans/s, {WRITERS} at a time)",
        scans.len(),
        scans.len() as f64 / took,
    );

    let started = Instant::now();
    let installed: usize = history
        .iter()
        .map(|(_, _, p)| {
            p.iter()
                .filter(|p| p.state == PatchState::Installed)
                .count()
        })
        .sum();
    stream::iter(history.iter())
        .map(|(i, uid, progress)| {
            let ring = if is_pilot(*i) { "pilot" } else { "broad" };
            store.apply_work_report(
                *uid,
                NAMESPACE,
                uuid::Uuid::new_v4(),
                uuid::Uuid::new_v4(),
                Some((POLICY, ring, None)),
                progress,
                true,
                now,
            )
        })
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<bool>>()
        .await?;
    println!(
        "install history: {} devices, {installed} packages installed and {} failed through Store::apply_work_report in {:.1} s",
        history.len(),
        history.len(),
        started.elapsed().as_secs_f64()
    );
    for table in [
        "patch_scans",
        "patch_updates",
        "patch_catalogue",
        "patch_installs",
        "objects",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(store.pool())
            .await?;
    }
    Ok(())
}

/// A work report of an earlier window: three approved updates of the scan installed (some
/// days ago), a fourth failed; none when the scan has fewer approved updates.
fn report(scan: &PatchScan, now_ms: i64, rng: &mut StdRng) -> Option<Vec<PatchProgress>> {
    let approved: Vec<&AvailableUpdate> = scan
        .updates
        .iter()
        .filter(|u| {
            !u.name.starts_with("postgresql-1")
                && (u.classification == Classification::Security || u.name.starts_with("lib"))
        })
        .collect();
    let [installed @ .., failed] = approved.get(..4)? else {
        return None;
    };
    let finished = now_ms - rng.random_range(1..45) * DAY_MS - rng.random_range(0..DAY_MS);
    let mut out: Vec<PatchProgress> = installed
        .iter()
        .enumerate()
        .map(|(k, u)| PatchProgress {
            name: u.name.clone(),
            version: u.to.clone(),
            state: PatchState::Installed,
            at_ms: finished + k as i64 * 20_000,
            exit_code: None,
            detail: None,
            log_tail: None,
        })
        .collect();
    out.push(PatchProgress {
            name: failed.name.clone(),
            version: failed.to.clone(),
            state: PatchState::Failed,
            at_ms: finished + 80_000,
            exit_code: Some(100),
            detail: Some(format!(
                "dpkg: error processing package {} (--configure)",
                failed.name
            )),
            log_tail: Some(format!(
                "Setting up {} ({}) ...\ndpkg: error processing package {} (--configure):\n installed post-installation script subprocess returned error exit status 1\nErrors were encountered while processing:\n {}\nE: Sub-process /usr/bin/dpkg returned an error code (1)",
                failed.name, failed.to, failed.name, failed.name
            )),
        });
    Some(out)
}

/// Nearest-rank percentile of sorted seconds, in milliseconds.
fn pct(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] * 1000.0
}

struct Timing {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn timing(mut times: Vec<f64>) -> Timing {
    times.sort_by(f64::total_cmp);
    Timing {
        p50: pct(&times, 0.50),
        p90: pct(&times, 0.90),
        p99: pct(&times, 0.99),
        max: pct(&times, 1.0),
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:7.1} ms  p90 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms",
            self.p50, self.p90, self.p99, self.max
        )
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn counts_line(label: &str, c: &cdot_crds::wire::patch::ComplianceCounts) -> String {
    format!(
        "{label}: {} devices, {} compliant, {} unknown, {} installed packages, missing {}, {} failed, {} pending reboot",
        c.devices,
        c.compliant,
        c.unknown,
        c.installed,
        [
            Classification::Security,
            Classification::Critical,
            Classification::Bugfix,
            Classification::Feature,
            Classification::ThirdParty,
        ]
        .iter()
        .map(|k| format!("{k:?} {}", c.missing.get(k).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(" / "),
        c.failed,
        c.pending_reboot,
    )
}

async fn measure(args: &Args, store: &Store) -> anyhow::Result<()> {
    let state = AppState::new(store.clone(), Arc::new(Metrics::default()));
    let mut objects = store.objects_of_kind(Kind::Device).await?;
    objects.extend(store.objects_of_kind(Kind::PatchPolicy).await?);
    state.index.replace(&objects);
    let token = "cdot_bench_viewer";
    state.replace_tokens(TokenIndex::new(&[ApiToken {
        name: "bench".into(),
        namespace: "cdot-system".into(),
        token_sha256: hash_token(token),
        role: Role::Viewer,
        namespaces: vec![NAMESPACE.into()],
    }]));
    let app = api::app(state.clone(), Duration::from_secs(120));
    let (scans, updates, installs): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM patch_scans), (SELECT count(*) FROM patch_updates), (SELECT count(*) FROM patch_installs)",
    )
    .fetch_one(store.pool())
    .await?;
    println!(
        "measuring: {scans} scans, {updates} updates, {installs} install rows; {} timed runs per variant after {WARMUP} warm-up runs",
        args.runs
    );

    let get = |path: String| {
        let app = app.clone();
        async move {
            let request = Request::get(&path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())?;
            let started = Instant::now();
            let response = app.oneshot(request).await?;
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            let took = started.elapsed().as_secs_f64();
            if status != StatusCode::OK {
                bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&bytes));
            }
            anyhow::Ok((took, bytes))
        }
    };
    let compliance_path = format!("/v1/namespaces/{NAMESPACE}/patches/compliance");
    let variants = [
        ("json", compliance_path.clone()),
        ("csv", format!("{compliance_path}?format=csv")),
        ("html", format!("{compliance_path}?format=html")),
        ("site-03", format!("{compliance_path}?site=site-03")),
    ];
    let mut json_p99 = None;
    for (variant, path) in &variants {
        let mut times = Vec::new();
        let mut last = Default::default();
        for run in 0..WARMUP + args.runs.max(1) {
            let (took, bytes) = get(path.clone()).await?;
            if run >= WARMUP {
                times.push(took);
            }
            last = bytes;
        }
        let t = timing(times);
        println!(
            "GET {path:<52} {t}  ({}{})",
            mib(last.len()),
            if *variant == "csv" {
                format!(", {} lines", last.iter().filter(|b| **b == b'\n').count())
            } else {
                String::new()
            }
        );
        if matches!(*variant, "json" | "site-03") {
            let report: ComplianceReport = serde_json::from_slice(&last)?;
            println!("    {}", counts_line("totals", &report.totals));
            if *variant == "json" {
                println!(
                    "    {} sites, {} device rows; {} devices never patched successfully",
                    report.sites.len(),
                    report.devices.len(),
                    report
                        .devices
                        .iter()
                        .filter(|d| d.last_success_at.is_none())
                        .count()
                );
                json_p99 = Some(t.p99);
            }
        }
    }

    let plan_path = format!("/v1/namespaces/{NAMESPACE}/patchpolicies/{POLICY}/plan");
    let mut times = Vec::new();
    let mut last = Default::default();
    for run in 0..WARMUP + args.plan_runs.max(1) {
        let (took, bytes) = get(plan_path.clone()).await?;
        if run >= WARMUP {
            times.push(took);
        }
        last = bytes;
    }
    let plan: PatchPlan = serde_json::from_slice(&last)?;
    let mut decisions: BTreeMap<Decision, usize> = BTreeMap::new();
    for d in &plan.devices {
        for c in &d.changes {
            *decisions.entry(c.decision).or_default() += 1;
        }
    }
    println!(
        "GET {plan_path:<52} {}  ({}, {} timed runs)",
        timing(times),
        mib(last.len()),
        args.plan_runs.max(1)
    );
    println!(
        "    {} devices, {} changes: {}; {} devices to reboot",
        plan.devices.len(),
        decisions.values().sum::<usize>(),
        decisions
            .iter()
            .map(|(d, n)| format!("{n} {d:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        plan.devices.iter().filter(|d| d.reboot).count()
    );

    breakdown(args, &state).await?;

    let p99 = json_p99.unwrap_or(f64::NAN);
    println!(
        "verdict: JSON compliance report over {} devices x {} updates: p99 {p99:.1} ms {} the {TARGET_MS:.0} ms target ({})",
        args.devices,
        args.packages,
        if p99 < TARGET_MS { "meets" } else { "MISSES" },
        if p99 < TARGET_MS {
            format!("{:.0} % of it", p99 / TARGET_MS * 100.0)
        } else {
            format!("{:.1}x over", p99 / TARGET_MS)
        }
    );
    Ok(())
}

/// The JSON report's phases timed apart, calling what the route calls: the device list
/// from the index, `compliance::facts` (its SQL and decisions), `compliance::report`, the
/// JSON encoding and freeing what they made. Then `compliance::facts` apart again, through
/// the store's functions it calls.
async fn breakdown(args: &Args, state: &AppState) -> anyhow::Result<()> {
    let mut phases: [(&str, Vec<f64>); 6] = [
        ("index devices + policies", Vec::new()),
        ("compliance::facts (SQL + counting)", Vec::new()),
        ("compliance::report", Vec::new()),
        ("serde_json::to_vec", Vec::new()),
        ("drop facts + report", Vec::new()),
        ("sum", Vec::new()),
    ];
    let mut size = 0;
    for run in 0..WARMUP + args.runs.max(1) {
        let t0 = Instant::now();
        let snapshot = state.index.snapshot();
        let policies = work::policies(&snapshot, NAMESPACE);
        let devices = devices(&snapshot);
        let views = views(&devices);
        let t1 = Instant::now();
        let now = jiff::Timestamp::now();
        let facts = compliance::facts(&state.store, NAMESPACE, &policies, &views, now).await?;
        let t2 = Instant::now();
        let report = compliance::report(NAMESPACE, &policies, &views, &facts, now);
        let t3 = Instant::now();
        let json = serde_json::to_vec(&report)?;
        let t4 = Instant::now();
        size = json.len();
        // The route drops them before its response is done.
        drop(views);
        drop((facts, report, devices, policies, snapshot));
        let t5 = Instant::now();
        if run >= WARMUP {
            for (k, (from, to)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t0, t5)]
                .into_iter()
                .enumerate()
            {
                phases[k].1.push((to - from).as_secs_f64());
            }
        }
        std::hint::black_box(json);
    }
    println!(
        "breakdown of the JSON report ({} runs, {}):",
        args.runs.max(1),
        mib(size)
    );
    for (name, times) in phases {
        println!("    {name:<34} {}", timing(times));
    }
    facts_apart(args, state).await
}

type DeviceRow = (uuid::Uuid, String, Option<String>, BTreeMap<String, String>);

/// The namespace's devices as the route lists them (site from the spec, else the label).
fn devices(snapshot: &cdot_operator::index::Snapshot) -> Vec<DeviceRow> {
    snapshot
        .in_namespace(Kind::Device, NAMESPACE)
        .map(|o| {
            let site = serde_json::from_value::<DeviceSpec>(o.spec.clone())
                .ok()
                .and_then(|s| s.site)
                .or_else(|| o.labels.get(SITE_LABEL).cloned());
            (o.uid, o.name.clone(), site, o.labels.clone())
        })
        .collect()
}

fn views(devices: &[DeviceRow]) -> Vec<compliance::ReportDevice<'_>> {
    devices
        .iter()
        .map(|(uid, name, site, labels)| compliance::ReportDevice {
            uid: *uid,
            name,
            site: site.as_deref(),
            labels,
        })
        .collect()
}

/// `compliance::facts` step by step, through the same store functions and with the same
/// arguments (one policy here, selecting every device): the scans with their catalogue
/// ids, the install totals, the catalogue, the installed versions (the report runs these
/// four queries at once; here they are timed one after the other), the policy's decisions
/// on the entries the scans offer, and the counting of each device's missing updates.
async fn facts_apart(args: &Args, state: &AppState) -> anyhow::Result<()> {
    let mut phases: [(&str, Vec<f64>); 6] = [
        ("Store::patch_offered", Vec::new()),
        ("Store::patch_install_totals", Vec::new()),
        ("Store::patch_candidates", Vec::new()),
        ("Store::patch_installed", Vec::new()),
        ("decisions on the candidates", Vec::new()),
        ("counting missing updates", Vec::new()),
    ];
    let snapshot = state.index.snapshot();
    let policies = work::policies(&snapshot, NAMESPACE);
    let Some(policy) = policies.first() else {
        bail!("no valid PatchPolicy in {NAMESPACE}");
    };
    let devices = devices(&snapshot);
    let mine: Vec<uuid::Uuid> = devices
        .iter()
        .filter(|(_, _, _, labels)| {
            cdot_crds::common::selector_matches(&policy.spec.selector, labels)
        })
        .map(|(uid, ..)| *uid)
        .collect();
    let mut counts = (0, 0, 0, 0, 0);
    for run in 0..WARMUP + args.runs.max(1) {
        let t0 = Instant::now();
        let scans = state.store.patch_offered(NAMESPACE).await?;
        let t1 = Instant::now();
        let totals = state.store.patch_install_totals(NAMESPACE).await?;
        let t2 = Instant::now();
        let candidates = state.store.patch_candidates(NAMESPACE).await?;
        let t3 = Instant::now();
        let installed =
            compliance::installed_by_device(state.store.patch_installed(NAMESPACE).await?);
        let t4 = Instant::now();
        let now = jiff::Timestamp::now();
        let candidates = compliance::offered_candidates(candidates, scans.values());
        let verdicts = compliance::Verdicts::new(&policy.approver, &candidates, now);
        let t5 = Instant::now();
        let none = Vec::new();
        let mut missing = 0;
        for uid in &mine {
            let mut facts = compliance::DeviceFacts::default();
            if let Some(offered) = scans.get(uid) {
                verdicts.count(
                    &offered.updates,
                    installed.get(uid).unwrap_or(&none),
                    &mut facts,
                );
            }
            missing += facts.missing.values().sum::<u32>();
        }
        let t6 = Instant::now();
        counts = (
            scans.len(),
            totals.len(),
            candidates.len(),
            installed.values().map(Vec::len).sum::<usize>(),
            missing,
        );
        if run >= WARMUP {
            for (k, (from, to)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)]
                .into_iter()
                .enumerate()
            {
                phases[k].1.push((to - from).as_secs_f64());
            }
        }
    }
    println!(
        "compliance::facts step by step ({} scans, {} devices with installs, {} candidates, {} offered updates installed, {} missing):",
        counts.0, counts.1, counts.2, counts.3, counts.4
    );
    for (name, times) in phases {
        println!("    {name:<34} {}", timing(times));
    }
    Ok(())
}
