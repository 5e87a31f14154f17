//! Running the package manager's commands: in the C locale and never interactive, under
//! `chroot ROOT` when the system is a root directory, with a timeout that ends the whole
//! process group (apt-get's download methods and dpkg included), and with bounded output.
use std::{
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
    sync::mpsc,
};

/// Most stdout bytes kept for parsing (a dist-upgrade simulation of thousands of packages
/// is a few hundred KiB); beyond that the output is cut and [`Output::stdout_truncated`] says
/// so.
pub const MAX_STDOUT_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of the end of stderr, and of the combined output, that are kept.
pub const TAIL_BYTES: usize = 64 * 1024;

/// The environment of every command: the C locale (the parsers read English), no questions
/// (debconf, apt-listchanges, Ubuntu's needrestart), and a standard PATH whatever the agent
/// was started with (the chroot's programs live there).
const ENV: &[(&str, &str)] = &[
    ("LC_ALL", "C"),
    ("LANG", "C"),
    ("LANGUAGE", ""),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("APT_LISTCHANGES_FRONTEND", "none"),
    ("NEEDRESTART_MODE", "a"),
    ("NEEDRESTART_SUSPEND", "1"),
    ("UCF_FORCE_CONFFOLD", "1"),
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
];

/// Passed on from the agent's environment: a proxy apt or dnf may be configured to use
/// through it.
const PASSED_ON: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// Why a command gave no exit status.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {}s and was killed", timeout.as_secs())]
    Timeout {
        command: String,
        timeout: Duration,
        /// What it printed until then.
        output: Box<Output>,
    },
    #[error("waiting for `{command}` failed: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

impl CommandError {
    /// The combined output printed before the failure, if any.
    pub fn combined_tail(&self) -> &str {
        match self {
            Self::Timeout { output, .. } => &output.combined,
            _ => "",
        }
    }
}

/// What a finished command printed and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Standard output, at most [`MAX_STDOUT_BYTES`].
    pub stdout: String,
    /// Standard output was longer than [`MAX_STDOUT_BYTES`].
    pub stdout_truncated: bool,
    /// The last [`TAIL_BYTES`] of standard error.
    pub stderr: String,
    /// The last [`TAIL_BYTES`] of both streams, interleaved as they arrived.
    pub combined: String,
}

impl Output {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// `exit code 100` or `killed by signal 9`.
    pub fn describe_end(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_owned(),
        }
    }
}

/// A command line to run on the managed system.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }
}

impl fmt::Display for Cmd {
    /// The command as a person would type it (without the chroot).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            if arg.is_empty() || arg.contains([' ', '\'', '"', '$', '\\']) {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

/// Runs commands on the host or under `chroot ROOT`.
#[derive(Clone, Debug)]
pub struct Runner {
    root: Option<PathBuf>,
}

impl Runner {
    pub fn new(root: Option<PathBuf>) -> Self {
        Self { root }
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// `path` (absolute, as the managed system sees it) as this process sees it.
    pub fn host_path(&self, path: &str) -> PathBuf {
        match &self.root {
            Some(root) => root.join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    /// The first of the standard program directories holding an executable `name`.
    pub fn find_program(&self, name: &str) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        [
            "/usr/bin",
            "/usr/sbin",
            "/usr/local/bin",
            "/usr/local/sbin",
            "/bin",
            "/sbin",
        ]
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|path| {
            std::fs::metadata(self.host_path(path))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    }

    /// Runs `cmd` to its end or until `timeout`, when its whole process group is killed.
    pub async fn run(&self, cmd: &Cmd, timeout: Duration) -> Result<Output, CommandError> {
        let (program, args): (OsString, Vec<OsString>) = match &self.root {
            Some(root) => (
                "chroot".into(),
                std::iter::once(root.as_os_str().to_owned())
                    .chain(std::iter::once(OsString::from(&cmd.program)))
                    .chain(cmd.args.iter().map(OsString::from))
                    .collect(),
            ),
            None => (
                cmd.program.clone().into(),
                cmd.args.iter().map(OsString::from).collect(),
            ),
        };
        let mut command = Command::new(&program);
        command
            .args(&args)
            .env_clear()
            .envs(ENV.iter().copied())
            .envs(
                PASSED_ON
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
            )
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout ends apt-get's children too.
            .process_group(0)
            .kill_on_drop(true);
        let label = match &self.root {
            Some(root) => format!("chroot {} {cmd}", root.display()),
            None => cmd.to_string(),
        };
        tracing::debug!(command = %label, "running");
        let mut child = command.spawn().map_err(|source| CommandError::Spawn {
            command: label.clone(),
            source,
        })?;
        let pid = child.id();

        let (tx, rx) = mpsc::unbounded_channel();
        let stdout = child
            .stdout
            .take()
            .map(|s| pump(s, Stream::Stdout, tx.clone()));
        let stderr = child.stderr.take().map(|s| pump(s, Stream::Stderr, tx));
        let collect = tokio::spawn(collect(rx));

        let status = tokio::time::timeout(timeout, child.wait()).await;
        let status = match status {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                return Err(CommandError::Wait {
                    command: label,
                    source,
                });
            }
            Err(_) => {
                kill_group(pid);
                let _ = child.wait().await;
                let output = finish(stdout, stderr, collect, None).await;
                return Err(CommandError::Timeout {
                    command: label,
                    timeout,
                    output: Box::new(output),
                });
            }
        };
        // A child that forked a daemon keeps the pipes open: do not wait on it forever.
        let output = tokio::time::timeout(
            Duration::from_secs(10),
            finish(stdout, stderr, collect, Some(status)),
        )
        .await;
        match output {
            Ok(output) => Ok(output),
            Err(_) => {
                kill_group(pid);
                Ok(Output {
                    code: status.code(),
                    signal: std::os::unix::process::ExitStatusExt::signal(&status),
                    ..Output::default()
                })
            }
        }
    }
}

fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

fn pump(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    tx: mpsc::UnboundedSender<(Stream, Vec<u8>)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stdout_truncated: bool,
    stderr: Tail,
    combined: Tail,
}

async fn collect(mut rx: mpsc::UnboundedReceiver<(Stream, Vec<u8>)>) -> Collected {
    let mut out = Collected::default();
    while let Some((stream, chunk)) = rx.recv().await {
        out.combined.push(&chunk);
        match stream {
            Stream::Stdout => {
                let room = MAX_STDOUT_BYTES.saturating_sub(out.stdout.len());
                if chunk.len() > room {
                    out.stdout_truncated = true;
                }
                out.stdout
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Stream::Stderr => out.stderr.push(&chunk),
        }
    }
    out
}

async fn finish(
    stdout: Option<tokio::task::JoinHandle<()>>,
    stderr: Option<tokio::task::JoinHandle<()>>,
    collect: tokio::task::JoinHandle<Collected>,
    status: Option<ExitStatus>,
) -> Output {
    for pump in [stdout, stderr].into_iter().flatten() {
        let _ = pump.await;
    }
    let collected = collect.await.unwrap_or_default();
    Output {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        stdout: String::from_utf8_lossy(&collected.stdout).into_owned(),
        stdout_truncated: collected.stdout_truncated,
        stderr: collected.stderr.into_string(),
        combined: collected.combined.into_string(),
    }
}

/// The last [`TAIL_BYTES`] of a stream.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
        if self.0.len() > 2 * TAIL_BYTES {
            let cut = self.0.len() - TAIL_BYTES;
            self.0.drain(..cut);
        }
    }

    fn into_string(mut self) -> String {
        if self.0.len() > TAIL_BYTES {
            let cut = self.0.len() - TAIL_BYTES;
            self.0.drain(..cut);
        }
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// The last `max` bytes of `text`, starting on a char boundary.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A short excerpt of a command's complaint for a one-line message: its error lines when it
/// printed some (apt's `E:`, dnf's `Error:`, dpkg's `dpkg: error` and a maintainer script's
/// `returned error exit status`), else the last non-empty lines of stderr (or of `fallback`), at most
/// `max` bytes.
pub fn excerpt(stderr: &str, fallback: &str, max: usize) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("E:")
                || l.starts_with("Error:")
                || l.starts_with("dpkg: error")
                || l.contains("returned error exit status")
        })
        .collect();
    let lines: Vec<&str> = if !errors.is_empty() {
        errors
    } else {
        let source = if stderr.trim().is_empty() {
            fallback
        } else {
            stderr
        };
        let all: Vec<&str> = source
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        all[all.len().saturating_sub(3)..].to_vec()
    };
    let joined = lines.join(" | ");
    if joined.len() <= max {
        joined
    } else {
        let mut end = max;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &joined[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_on_a_char_boundary() {
        let text = "aé€x";
        assert_eq!(tail(text, 100), text);
        assert_eq!(tail(text, 1), "x");
        // 4 bytes back lands inside "€" (3 bytes) + "x": starts at "€".
        assert_eq!(tail(text, 4), "€x");
        // 5 bytes back lands inside "é": the cut moves forward to "€".
        assert_eq!(tail(text, 5), "€x");
        assert_eq!(tail(text, 6), "é€x");
    }

    #[test]
    fn excerpt_prefers_error_lines() {
        let stderr = "W: something minor\nE: Could not get lock /var/lib/dpkg/lock-frontend\nE: Unable to acquire the dpkg frontend lock\n";
        assert_eq!(
            excerpt(stderr, "", 200),
            "E: Could not get lock /var/lib/dpkg/lock-frontend | E: Unable to acquire the dpkg frontend lock"
        );
        assert_eq!(excerpt("", "a\nb\n\nc\nd\n", 200), "b | c | d");
        let dpkg = "cdot-broken: failed on purpose\ndpkg: error processing package cdot-broken (--configure):\n installed cdot-broken package post-installation script subprocess returned error exit status 3\nErrors were encountered while processing:\n cdot-broken\nE: Sub-process /usr/bin/dpkg returned an error code (1)\n";
        assert_eq!(
            excerpt(dpkg, "", 1000),
            "dpkg: error processing package cdot-broken (--configure): | installed cdot-broken package post-installation script subprocess returned error exit status 3 | E: Sub-process /usr/bin/dpkg returned an error code (1)"
        );
        assert_eq!(excerpt("ééé", "", 3), "é…");
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let cmd = Cmd::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${Version}\n"])
            .arg("");
        assert_eq!(
            cmd.to_string(),
            "dpkg-query -W -f '${Package} ${Version}\n' ''"
        );
    }

    #[tokio::test]
    async fn runs_with_the_c_locale_and_captures_both_streams() {
        let out = Runner::new(None)
            .run(
                &Cmd::new("sh").args(["-c", "echo out:$LC_ALL; echo err >&2; exit 7"]),
                Duration::from_secs(10),
            )
            .await
            .expect("sh runs");
        assert_eq!(out.code, Some(7));
        assert_eq!(out.stdout, "out:C\n");
        assert_eq!(out.stderr, "err\n");
        assert!(out.combined.contains("out:C") && out.combined.contains("err"));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let started = std::time::Instant::now();
        let err = Runner::new(None)
            .run(
                &Cmd::new("sh").args(["-c", "echo begun; sleep 30 & sleep 30; wait"]),
                Duration::from_millis(300),
            )
            .await
            .expect_err("times out");
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(err.combined_tail().contains("begun"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = Runner::new(None)
            .run(&Cmd::new("/nonexistent/prog"), Duration::from_secs(1))
            .await
            .expect_err("cannot start");
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
    }
}
