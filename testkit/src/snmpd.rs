//! net-snmp's `snmpd` as a real SNMP agent on a lab host (see [`crate::netns`]): v1/v2c
//! communities (optionally with subtrees hidden, e.g. an agent without ifXTable) and v3
//! users, listening on the host's address, port 161. Needs `apt-get install snmpd snmp`.
//!
//! ```no_run
//! use cdot_testkit::{netns::Lab, snmpd::{Snmpd, SnmpdConfig}};
//! let lab = Lab::new();
//! let host = lab.add_host();
//! let agent = Snmpd::start(
//!     &host,
//!     SnmpdConfig::new()
//!         .community("public")
//!         .user("monitor", "SHA", "auth-pass", Some(("AES", "priv-pass"))),
//! );
//! println!("agent at {}", agent.endpoint());
//! ```
use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::netns::Host;

/// What `snmpd` logs once it serves requests.
const READY_LINE: &str = "NET-SNMP version";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// snmpd.conf lines, built up by the methods below.
#[derive(Clone, Debug, Default)]
pub struct SnmpdConfig {
    lines: Vec<String>,
    views: u32,
    /// Addresses listened on besides the host's own.
    also_on: Vec<Ipv4Addr>,
}

impl SnmpdConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// A read-only v1/v2c community, any source, everything visible.
    pub fn community(mut self, community: &str) -> Self {
        self.lines.push(format!("rocommunity {community} default"));
        self
    }

    /// A read-only v1/v2c community that sees everything but the `excluded` subtrees
    /// (numeric OIDs), e.g. `1.3.6.1.2.1.31` for an agent without ifXTable.
    pub fn community_without(mut self, community: &str, excluded: &[&str]) -> Self {
        self.views += 1;
        let view = format!("cdotview{}", self.views);
        self.lines.push(format!("view {view} included .1"));
        for oid in excluded {
            self.lines.push(format!(
                "view {view} excluded .{}",
                oid.trim_start_matches('.')
            ));
        }
        self.lines
            .push(format!("rocommunity {community} default -V {view}"));
        self
    }

    /// A read-only v3 user: authPriv with `privacy` = (protocol, password), else
    /// authNoPriv. Protocols as net-snmp spells them: `SHA`, `SHA-256`, `SHA-512`; `AES`,
    /// `AES-256`.
    pub fn user(
        mut self,
        name: &str,
        auth_protocol: &str,
        auth_password: &str,
        privacy: Option<(&str, &str)>,
    ) -> Self {
        match privacy {
            Some((priv_protocol, priv_password)) => {
                self.lines.push(format!(
                    "createUser {name} {auth_protocol} \"{auth_password}\" {priv_protocol} \"{priv_password}\""
                ));
                self.lines.push(format!("rouser {name} priv"));
            }
            None => {
                self.lines.push(format!(
                    "createUser {name} {auth_protocol} \"{auth_password}\""
                ));
                self.lines.push(format!("rouser {name} auth"));
            }
        }
        self
    }

    /// Also listens on `address` (another address of the host), as a router answers on
    /// each of its addresses.
    pub fn also_on(mut self, address: Ipv4Addr) -> Self {
        self.also_on.push(address);
        self
    }

    /// Any other snmpd.conf line.
    pub fn line(mut self, line: &str) -> Self {
        self.lines.push(line.to_owned());
        self
    }
}

/// A running `snmpd`; stopped and its files removed on drop.
pub struct Snmpd {
    host: Host,
    dir: PathBuf,
    child: Option<Child>,
}

impl Snmpd {
    /// Writes the configuration and starts `snmpd` in `host`'s namespace, returning once
    /// it serves requests; panics with its log otherwise.
    pub fn start(host: &Host, config: SnmpdConfig) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cdot-snmpd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("persist"))
            .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut conf = format!("agentAddress udp:{}:161", host.addr);
        for address in &config.also_on {
            conf.push_str(&format!(",udp:{address}:161"));
        }
        conf.push('\n');
        for line in &config.lines {
            conf.push_str(line);
            conf.push('\n');
        }
        std::fs::write(dir.join("snmpd.conf"), conf)
            .unwrap_or_else(|e| panic!("write {}/snmpd.conf: {e}", dir.display()));
        let mut snmpd = Self {
            host: host.clone(),
            dir,
            child: None,
        };
        snmpd.launch();
        snmpd
    }

    /// `ADDRESS:161`.
    pub fn endpoint(&self) -> String {
        format!("{}:161", self.host.addr)
    }

    /// Stops the agent and starts it again with the same configuration and persistent
    /// state: sysUpTime starts over, a v3 engine keeps its id and counts one more boot.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("snmpd.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
        let log = self.dir.join("snmpd.log");
        let _ = std::fs::remove_file(&log);
        let mut command = self.host.command("snmpd");
        command
            .arg("-f")
            .arg("-C")
            .arg("-c")
            .arg(self.dir.join("snmpd.conf"))
            .arg("-Lf")
            .arg(&log)
            .arg("-p")
            .arg(self.dir.join("snmpd.pid"))
            .arg(format!(
                "--persistentDir={}",
                self.dir.join("persist").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start snmpd (apt-get install snmpd): {e}"));
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.log().contains(READY_LINE) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "snmpd in {} exited with {status}: {}",
                    self.host.ns,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "snmpd in {} not ready after {START_TIMEOUT:?}: {}",
                self.host.ns,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM so that it saves its persistent state (engine boots).
        crate::process::terminate(&mut child, Duration::from_secs(5));
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
