//! A private PostgreSQL cluster for standalone mode, made with the system's `initdb` and
//! `pg_ctl`: no service to install or configure, stopped when the operator exits.
//!
//! The cluster listens on 127.0.0.1 only, with SCRAM password authentication; the password
//! is generated once and kept in the data directory (0600). The port is chosen once and
//! kept (`postgres.port`) while it is free, so a `psql` user finds the server again. As
//! root, the server runs as the `postgres` user, because PostgreSQL refuses to run as root.
//!
//! [`supervise`] watches the server's process: if it dies (OOM killer, `kill -9`), it is
//! started again on the same port, PostgreSQL's crash recovery replays the WAL, and the
//! operator's pool reconnects by itself.
use std::{
    net::TcpListener,
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use rand::{Rng, distr::Alphanumeric};

const SUPERUSER: &str = "cdot";
const DATABASE: &str = "cdot";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found under /usr/lib/postgresql/*/bin; \
         install them with `apt-get install -y postgresql` (Debian/Ubuntu), pass --postgres-bin-dir, \
         or give an existing server with --database-url / DATABASE_URL"
    )]
    NoBinaries,
    #[error(
        "running as root but there is no `postgres` user to run the embedded PostgreSQL as; install the postgresql package or pass --database-url"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` user cannot reach {path}: a parent directory is not searchable by others; choose another --data-dir"
    )]
    Unreachable { path: PathBuf },
    #[error("failed to prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error(
        "failed to read {path}, a setting of the embedded PostgreSQL (is --data-dir the running operator's?): {source}"
    )]
    Settings {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Settings for a cluster that holds metrics and flows on the operator's own machine.
/// PostgreSQL's defaults (128 MB of shared buffers, 1 GB of WAL between checkpoints) made
/// the metric writers and the rollup evict each other's pages and checkpoint every couple
/// of minutes at 60,000 samples a second.
fn tuning(memory_bytes: u64) -> String {
    const MB: u64 = 1024 * 1024;
    // An eighth of the memory, between the default and 2 GB: the rest stays for the
    // operator, the OS page cache and whatever else the machine runs.
    let shared_buffers = (memory_bytes / 8).clamp(128 * MB, 2048 * MB) / MB;
    let effective_cache = (memory_bytes / 2).max(512 * MB) / MB;
    format!(
        "-c shared_buffers={shared_buffers}MB -c effective_cache_size={effective_cache}MB \
         -c max_wal_size=4GB -c checkpoint_timeout=15min -c checkpoint_completion_target=0.9 \
         -c wal_compression=on -c wal_buffers=16MB"
    )
}

/// Physical memory from /proc/meminfo (0 when unreadable: the smallest settings apply).
fn total_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A running private PostgreSQL; call [`EmbeddedPostgres::stop`] on shutdown (dropping it
/// also stops the server, as a last resort).
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(u32, u32)>,
    running: AtomicBool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The default data directory: `/var/lib/cdot-rmm` for root, else under the user's data home.
/// The application database's URL of the embedded PostgreSQL an operator runs under
/// `data_dir` (its kept port and password), for tools that read it while it runs.
pub fn running_url(data_dir: &Path) -> Result<String, EmbeddedError> {
    let read = |name: &str| {
        let path = data_dir.join(name);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|source| EmbeddedError::Settings {
                path: path.clone(),
                source,
            })
    };
    let (port, password) = (read("postgres.port")?, read("postgres.password")?);
    Ok(format!(
        "postgres://{SUPERUSER}:{password}@127.0.0.1:{port}/{DATABASE}"
    ))
}

pub fn default_data_dir() -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/lib/cdot-rmm");
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("cdot-rmm")
}

impl EmbeddedPostgres {
    /// Creates the cluster under `data_dir/postgres` if needed, and starts it.
    pub fn start(data_dir: &Path, bin_dir: Option<&Path>) -> Result<Self, EmbeddedError> {
        let bin_dir = match bin_dir {
            Some(dir) => dir.to_owned(),
            None => find_bin_dir().ok_or(EmbeddedError::NoBinaries)?,
        };
        if !bin_dir.join("initdb").exists() {
            return Err(EmbeddedError::NoBinaries);
        }
        let run_as = if nix::unistd::Uid::effective().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(EmbeddedError::NoPostgresUser)?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };

        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let data_dir = data_dir.canonicalize().map_err(io_err(data_dir))?;
        secure_data_dir(&data_dir, run_as)?;
        let pgdata = data_dir.join("postgres");
        let password_file = data_dir.join("postgres.password");
        let mut server = Self {
            bin_dir,
            pgdata,
            port: 0,
            password: String::new(),
            run_as,
            running: AtomicBool::new(false),
        };

        if !server.pgdata.join("PG_VERSION").exists() {
            server.init(&password_file)?;
        }
        server.password = std::fs::read_to_string(&password_file)
            .map_err(io_err(&password_file))?
            .trim()
            .to_owned();
        server.stop_stale();
        server.port = kept_port(&data_dir.join("postgres.port"))?;
        server.launch()?;
        tracing::info!(pgdata = %server.pgdata.display(), port = server.port, "embedded PostgreSQL started");
        Ok(server)
    }

    /// Starts the server process (after a crash, PostgreSQL recovers from its WAL first).
    fn launch(&self) -> Result<(), EmbeddedError> {
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &self.pgdata.join("server.log").to_string_lossy(),
            "-o",
            &format!(
                "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='' {}",
                self.port,
                tuning(total_memory_bytes())
            ),
        ])?;
        self.running.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the postmaster named in `postmaster.pid` is still running.
    pub fn is_alive(&self) -> bool {
        let Ok(pid_file) = std::fs::read_to_string(self.pgdata.join("postmaster.pid")) else {
            return false;
        };
        let Some(pid) = pid_file
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return false;
        };
        // A zombie (dead, not yet reaped by its parent) answers signal 0 too.
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                Some(state == 'Z' || state == 'X')
            })
            .unwrap_or(false);
        !zombie && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    }

    fn init(&self, password_file: &Path) -> Result<(), EmbeddedError> {
        let password: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        write_private(password_file, &password)?;
        std::fs::create_dir_all(&self.pgdata).map_err(io_err(&self.pgdata))?;
        std::fs::set_permissions(&self.pgdata, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(&self.pgdata))?;
        // initdb reads the password from a file it can open as the server user, outside the
        // (still empty) cluster directory.
        let pwfile = password_file.with_extension("initdb");
        write_private(&pwfile, &password)?;
        if let Some((uid, gid)) = self.run_as {
            for path in [&self.pgdata, &pwfile] {
                chown(path, Some(uid), Some(gid)).map_err(io_err(path))?;
            }
        }
        let result = self.run(
            "initdb",
            &[
                "-D",
                &self.pgdata.to_string_lossy(),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        );
        let _ = std::fs::remove_file(&pwfile);
        result?;
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL cluster created");
        Ok(())
    }

    /// A server left running by a previous process that died is stopped, so that ours can start.
    fn stop_stale(&self) {
        if self.pgdata.join("postmaster.pid").exists() && self.pg_ctl(&["status"]).is_ok() {
            tracing::warn!(pgdata = %self.pgdata.display(), "stopping a PostgreSQL left running by an earlier run");
            let _ = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        }
    }

    /// URL of the maintenance database, used once to create the application database.
    fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Makes sure the application database exists and returns its URL.
    pub async fn database_url(&self) -> Result<String, sqlx::Error> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url_for("postgres")).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query("CREATE DATABASE cdot")
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(self.url_for(DATABASE))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open transactions are rolled back, data is flushed).
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        self.running.store(false, Ordering::Release);
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])?;
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), EmbeddedError> {
        let mut full = vec!["-D", self.pgdata.to_str().unwrap_or_default()];
        full.extend_from_slice(args);
        self.run("pg_ctl", &full)
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), EmbeddedError> {
        let path = self.bin_dir.join(program);
        let mut command = Command::new(&path);
        command
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid).env("HOME", &self.pgdata);
        }
        let output = command.output().map_err(io_err(&path))?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        if let Ok(log) = std::fs::read_to_string(self.pgdata.join("server.log")) {
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            text.push_str("\nserver.log (last lines):\n");
            text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        Err(EmbeddedError::Command {
            command: format!("{} {}", path.display(), args.join(" ")),
            output: text.trim().to_owned(),
        })
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.running.load(Ordering::Acquire) {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), EmbeddedError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// How often [`supervise`] looks at the server's process.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait between two failed restarts.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// Restarts the server whenever its process is gone, until `stop` turns true; counts each
/// restart in `restarts`. Failed restarts (its old backends may still hold the shared
/// memory for a moment) are retried with backoff.
pub async fn supervise(
    server: Arc<EmbeddedPostgres>,
    restarts: Counter,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = SUPERVISE_INTERVAL;
    let mut died_at: Option<Instant> = None;
    loop {
        let pause = if died_at.is_some() {
            backoff
        } else {
            SUPERVISE_INTERVAL
        };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(pause) => {}
        }
        let checked = server.clone();
        if tokio::task::spawn_blocking(move || checked.is_alive())
            .await
            .unwrap_or(true)
        {
            continue;
        }
        if *stop.borrow() || !server.running.load(Ordering::Acquire) {
            return;
        }
        let since = *died_at.get_or_insert_with(|| {
            tracing::error!(pgdata = %server.pgdata.display(), port = server.port, "the embedded PostgreSQL died; restarting it (crash recovery)");
            Instant::now()
        });
        let restarting = server.clone();
        match tokio::task::spawn_blocking(move || restarting.launch()).await {
            Ok(Ok(())) => {
                restarts.inc();
                tracing::warn!(
                    port = server.port,
                    down_for_ms = since.elapsed().as_millis() as u64,
                    "the embedded PostgreSQL was restarted after it died"
                );
                died_at = None;
                backoff = SUPERVISE_INTERVAL;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "failed to restart the embedded PostgreSQL");
                backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
            }
            Err(e) => tracing::error!(error = %e, "the restart task failed"),
        }
    }
}

/// The port kept in `file` if it is free now, else a new free one (then kept).
fn kept_port(file: &Path) -> Result<u16, EmbeddedError> {
    let kept = std::fs::read_to_string(file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|&port| port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok());
    if let Some(port) = kept {
        return Ok(port);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io_err(file))?
        .port();
    std::fs::write(file, format!("{port}\n")).map_err(io_err(file))?;
    Ok(port)
}

/// The data directory holds the database password and the whole cluster: only its owner
/// may list it (0700). As root the server runs as `postgres`, which must still reach its
/// cluster inside: then the directory is root:postgres 0710 (search, no listing).
fn secure_data_dir(dir: &Path, run_as: Option<(u32, u32)>) -> Result<(), EmbeddedError> {
    let mode = match run_as {
        None => 0o700,
        Some((_, gid)) => {
            if let Some(parent) = dir.parent() {
                check_reachable_by_others(parent)?;
            }
            chown(dir, None, Some(gid)).map_err(io_err(dir))?;
            0o710
        }
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io_err(dir))
}

/// The server user must be able to search every ancestor of the data directory.
fn check_reachable_by_others(dir: &Path) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor).map_err(io_err(ancestor))?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(EmbeddedError::Unreachable {
                path: dir.to_owned(),
            });
        }
    }
    Ok(())
}
