//! Network namespaces for tests with real peers: a private layer-2 segment (a bridge in
//! its own namespace) that the test process reaches from the root namespace at
//! `10.231.N.1/24`, and any number of hosts on it (`10.231.N.10`, `.11`, ...), each a
//! namespace where real programs run: snmpd, softflowd, ping targets, traffic; and hosts
//! on a second segment (`10.232.N.0/24`) that one of them routes to.
//!
//! Every lab takes its own /24 (claimed atomically under `/run/cdot-testkit`, so that test
//! processes running in parallel never share one) and removes its namespaces, links and
//! child processes when dropped; labs left behind by a killed run are removed by the next.
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip` from iproute2.
use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::Mutex,
    time::Duration,
};

const CLAIMS: &str = "/run/cdot-testkit";
/// Second octet of every lab subnet: 10.231.N.0/24.
const OCTET: u8 = 231;

/// A private segment with hosts on it; everything is removed on drop.
pub struct Lab {
    subnet: u8,
    lan: String,
    root_if: String,
    hosts: Mutex<Vec<String>>,
    children: Mutex<Vec<Child>>,
    claim: PathBuf,
}

/// One namespace on a [`Lab`]'s segment.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub ns: String,
    /// Its address on the segment (interface `eth0`).
    pub addr: Ipv4Addr,
}

impl Lab {
    /// Claims a free /24 and builds the segment; panics with the failing command otherwise.
    pub fn new() -> Self {
        remove_stale();
        std::fs::create_dir_all(CLAIMS).unwrap_or_else(|e| panic!("create {CLAIMS}: {e}"));
        let subnet = (1..=250u8)
            .find(|n| claim(*n))
            .expect("no free lab subnet under /run/cdot-testkit (250 labs in use?)");
        let lab = Self {
            subnet,
            lan: format!("cdt{subnet}-lan"),
            root_if: format!("cdt{subnet}r"),
            hosts: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
            claim: PathBuf::from(format!("{CLAIMS}/{subnet}")),
        };
        // Leftovers of a run that died with this subnet claimed.
        ip(&["netns", "del", &lab.lan]).ok();
        ip(&["netns", "del", &format!("{}2", lab.lan)]).ok();
        ip(&["link", "del", &lab.root_if]).ok();
        for n in 0..64 {
            ip(&["netns", "del", &format!("cdt{subnet}-h{n}")]).ok();
        }
        let lan = lab.lan.as_str();
        must(&["netns", "add", lan]);
        must(&["-n", lan, "link", "set", "lo", "up"]);
        must(&["-n", lan, "link", "add", "br0", "type", "bridge"]);
        must(&["-n", lan, "link", "set", "br0", "up"]);
        let peer = format!("cdt{subnet}x");
        must(&[
            "link",
            "add",
            &lab.root_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        must(&["link", "set", &peer, "netns", lan]);
        must(&["-n", lan, "link", "set", &peer, "master", "br0", "up"]);
        must(&[
            "addr",
            "add",
            &format!("{}/24", lab.gateway()),
            "dev",
            &lab.root_if,
        ]);
        must(&["link", "set", &lab.root_if, "up"]);
        lab
    }

    /// The test process's address on the segment (the root namespace's side).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, OCTET, self.subnet, 1)
    }

    /// The test process's interface on the segment (in the root namespace).
    pub fn root_interface(&self) -> &str {
        &self.root_if
    }

    /// Adds a host namespace on the segment.
    pub fn add_host(&self) -> Host {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let n = hosts.len();
        assert!(n < 64, "a lab holds at most 64 hosts");
        let subnet = self.subnet;
        let ns = format!("cdt{subnet}-h{n}");
        let addr = Ipv4Addr::new(10, OCTET, subnet, 10 + n as u8);
        must(&["netns", "add", &ns]);
        hosts.push(ns.clone());
        must(&["-n", &ns, "link", "set", "lo", "up"]);
        plug(&ns, "eth0", addr, &self.lan, &format!("cdt{subnet}b{n}"));
        must(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &self.gateway().to_string(),
        ]);
        Host { ns, addr }
    }

    /// Adds a host on a second segment, `10.232.N.0/24`, that only `router` (a host of
    /// this lab, which gets `10.232.N.1` on its `eth1` and forwards) connects to the first:
    /// the test process reaches it through `router`, so stopping `router` cuts it off, as a
    /// real site's router does.
    pub fn add_host_behind(&self, router: &Host) -> Host {
        let subnet = self.subnet;
        let behind = format!("cdt{subnet}-lan2");
        let router_addr = Ipv4Addr::new(10, OCTET + 1, subnet, 1);
        if ip(&["netns", "pids", &behind]).is_err() {
            must(&["netns", "add", &behind]);
            must(&["-n", &behind, "link", "set", "lo", "up"]);
            must(&["-n", &behind, "link", "add", "br0", "type", "bridge"]);
            must(&["-n", &behind, "link", "set", "br0", "up"]);
            plug(
                &router.ns,
                "eth1",
                router_addr,
                &behind,
                &format!("cdt{subnet}rb"),
            );
            router.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
            must(&[
                "route",
                "replace",
                &format!("10.{}.{subnet}.0/24", OCTET + 1),
                "via",
                &router.addr.to_string(),
            ]);
        }
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let n = hosts.len();
        assert!(n < 64, "a lab holds at most 64 hosts");
        let ns = format!("cdt{subnet}-h{n}");
        let addr = Ipv4Addr::new(10, OCTET + 1, subnet, 10 + n as u8);
        must(&["netns", "add", &ns]);
        hosts.push(ns.clone());
        must(&["-n", &ns, "link", "set", "lo", "up"]);
        plug(&ns, "eth0", addr, &behind, &format!("cdt{subnet}b{n}"));
        must(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &router_addr.to_string(),
        ]);
        Host { ns, addr }
    }

    /// Starts `command` (made with [`Host::command`]) and stops it when the lab is dropped.
    pub fn spawn(&self, mut command: Command) -> u32 {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        pid
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// `program` to run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns, program]);
        command
    }

    /// Runs `program args` inside the namespace and returns its output; panics when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program} in {}: {e}", self.ns));
        assert!(
            output.status.success(),
            "`{program} {}` in {} failed: {}",
            args.join(" "),
            self.ns,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let mut children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for child in &children {
            // SIGTERM first so that daemons (nfcapd) write what they hold.
            crate::process::sigterm(child);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for child in &mut children {
            if !crate::process::wait_until(child, deadline) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for ns in self.hosts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["netns", "del", &self.lan]);
        let _ = ip(&["netns", "del", &format!("{}2", self.lan)]);
        let _ = ip(&["link", "del", &self.root_if]);
        let _ = std::fs::remove_dir_all(&self.claim);
    }
}

/// A veth from namespace `ns` (as `name`, with `addr/24`) to the bridge of `bridge_ns`.
fn plug(ns: &str, name: &str, addr: Ipv4Addr, bridge_ns: &str, bridge_side: &str) {
    let inside = format!("{bridge_side}i");
    must(&[
        "link",
        "add",
        &inside,
        "type",
        "veth",
        "peer",
        "name",
        bridge_side,
    ]);
    must(&["link", "set", &inside, "netns", ns]);
    must(&["-n", ns, "link", "set", &inside, "name", name]);
    must(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", name]);
    must(&["-n", ns, "link", "set", name, "up"]);
    must(&["link", "set", bridge_side, "netns", bridge_ns]);
    must(&[
        "-n",
        bridge_ns,
        "link",
        "set",
        bridge_side,
        "master",
        "br0",
        "up",
    ]);
}

fn ip(args: &[&str]) -> Result<Output, String> {
    let output = Command::new("ip")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e} (network namespace tests need root)");
    }
}

/// Frees the subnets of labs whose process is gone.
/// Claims subnet `n`: the claim appears whole, pid inside, by renaming a private directory
/// (a directory that existed empty for a moment could be taken for a dead run's by another
/// test's [`remove_stale`], which then deletes the namespaces being built).
fn claim(n: u8) -> bool {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let pid = std::process::id();
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = PathBuf::from(format!("{CLAIMS}/.claim-{pid}-{unique}"));
    let staged = std::fs::create_dir(&staging).is_ok()
        && std::fs::write(staging.join("pid"), pid.to_string()).is_ok();
    // rename(2) fails when the target is a directory with a pid file in it: claimed.
    let claimed = staged && std::fs::rename(&staging, format!("{CLAIMS}/{n}")).is_ok();
    if !claimed {
        let _ = std::fs::remove_dir_all(&staging);
    }
    claimed
}

fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(CLAIMS) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = std::fs::read_to_string(entry.path().join("pid")).unwrap_or_default();
        let alive =
            !pid.trim().is_empty() && PathBuf::from(format!("/proc/{}", pid.trim())).exists();
        if alive {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_str().unwrap_or_default();
        let Ok(subnet) = name.parse::<u8>() else {
            if name.starts_with(".claim-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
            continue;
        };
        let _ = ip(&["netns", "del", &format!("cdt{subnet}-lan")]);
        let _ = ip(&["netns", "del", &format!("cdt{subnet}-lan2")]);
        let _ = ip(&["link", "del", &format!("cdt{subnet}r")]);
        for n in 0..64 {
            let _ = ip(&["netns", "del", &format!("cdt{subnet}-h{n}")]);
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hosts and the test process reach each other over the lab segment.
    #[test]
    fn hosts_reach_each_other_and_the_gateway() {
        let lab = Lab::new();
        let a = lab.add_host();
        let b = lab.add_host();
        a.run("ping", &["-c", "1", "-W", "2", &b.addr.to_string()]);
        b.run("ping", &["-c", "1", "-W", "2", &lab.gateway().to_string()]);
        let out = Command::new("ping")
            .args(["-c", "1", "-W", "2", &a.addr.to_string()])
            .output()
            .expect("ping");
        assert!(out.status.success(), "root namespace reaches host a");
        // Behind a: reached through it, and cut off when it goes down.
        let c = lab.add_host_behind(&a);
        let ping = |to: Ipv4Addr| {
            Command::new("ping")
                .args(["-c", "1", "-W", "2", &to.to_string()])
                .output()
                .expect("ping")
                .status
                .success()
        };
        assert!(ping(c.addr), "the root namespace reaches c through a");
        a.run("ip", &["link", "set", "eth0", "down"]);
        assert!(!ping(c.addr), "not with a down");
        let ns = a.ns.clone();
        drop(lab);
        let list = ip(&["netns", "list"]).expect("list");
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&ns));
    }
}
