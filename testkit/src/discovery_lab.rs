//! The network discovery tests and benchmarks scan, written once: a lab segment
//! ([`crate::netns::Lab`], `10.231.N.0/24`) with hosts that each answer a discovery run
//! differently.
//!
//! | host | address | answers |
//! |---|---|---|
//! | [`router`](DiscoveryLab::router) | `.10` and `.200` | ICMP; SNMP v2c `public` on both addresses: a Cisco router's sysObjectID and sysDescr, an ENTITY-MIB serial, an LLDP chassis id and two LLDP neighbours (the switch and the v3 host) |
//! | [`switch`](DiscoveryLab::switch) | `.11` | ICMP; SNMP v2c `public`: a Catalyst switch, with its LLDP chassis id |
//! | [`v3`](DiscoveryLab::v3) | `.12` | ICMP; SNMPv3 only (authPriv SHA/AES user), with its LLDP chassis id |
//! | [`icmp_only`](DiscoveryLab::icmp_only) | `.13` | ICMP; UDP 161 closed (ICMP port unreachable) |
//! | [`wrong_community`](DiscoveryLab::wrong_community) | `.14` | ICMP; SNMP v2c with another community only (a v2c request with `public` times out) |
//! | [`garbage`](DiscoveryLab::garbage) | `.15` | ICMP; every datagram to UDP 161 answered with fixed bytes that are not SNMP |
//! | [`silent`](DiscoveryLab::silent) | `.250` | nothing: no host there |
//!
//! The test process itself is `.1` ([`DiscoveryLab::gateway`]) and answers ICMP.
//!
//! **How LLDP and the serial get into net-snmp.** Debian's snmpd has neither an ENTITY-MIB
//! nor an LLDP-MIB implementation, so the objects are made with snmpd.conf `override`
//! lines (`override OID TYPE VALUE`), which create an object that does not exist as well as
//! replace one that does, and serve it to GET, GETNEXT and GETBULK like any other (checked
//! with net-snmp 5.9.3). Binary values (MAC addresses) are given as `0x...` octet strings.
//! A whole table is one `override` per cell: lldpRemTable rows are indexed
//! `timeMark.localPortNum.remIndex`, lldpRemManAddrTable rows carry the management address
//! in their index (`...remIndex.1.4.a.b.c.d`), so only their accessible columns are made.
//! `pass` with a script would do too, at the cost of a process per request. Every chassis
//! id is the host's `eth0` MAC address (subtype macAddress), so that what the router's
//! neighbour table says matches what the neighbour says of itself.
use std::{
    net::{Ipv4Addr, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    netns::{Host, Lab},
    snmpd::{Snmpd, SnmpdConfig},
};

/// The community the switch and the router answer.
pub const COMMUNITY: &str = "public";
/// The only community of the wrong-community host.
pub const OTHER_COMMUNITY: &str = "not-the-scan-community";
/// The v3 host's user: SHA authentication, AES privacy.
pub const V3_USER: &str = "discovery";
pub const V3_AUTH_PASSWORD: &str = "auth-pass-v3";
pub const V3_PRIV_PASSWORD: &str = "priv-pass-v3";

pub const ROUTER_SYS_NAME: &str = "rtr-1";
pub const ROUTER_SYS_DESCR: &str =
    "Cisco IOS Software, C1100 Software (C1100-UNIVERSALK9-M), Version 17.9.4a";
/// Without a leading dot, as discovery reports it.
pub const ROUTER_SYS_OBJECT_ID: &str = "1.3.6.1.4.1.9.1.1208";
pub const ROUTER_SYS_LOCATION: &str = "lab rack 1";
pub const ROUTER_SERIAL: &str = "FTX1234ABCD";
pub const SWITCH_SYS_NAME: &str = "sw-1";
pub const SWITCH_SYS_DESCR: &str =
    "Cisco IOS Software, Catalyst L3 Switch Software (CAT9K_IOSXE), Version 17.9.4";
pub const SWITCH_SYS_OBJECT_ID: &str = "1.3.6.1.4.1.9.1.2";
pub const V3_SYS_NAME: &str = "srv-1";
/// What the garbage host answers to every datagram.
pub const GARBAGE: &[u8] = b"this is not SNMP \x00\xff\xfe";

/// LLDP-MIB lldpLocalSystemData and lldpRemoteSystemsData entries.
const LLDP_LOC: &str = ".1.0.8802.1.1.2.1.3";
const LLDP_REM: &str = ".1.0.8802.1.1.2.1.4.1.1";
const LLDP_REM_MAN_ADDR: &str = ".1.0.8802.1.1.2.1.4.2.1";

/// The responder of the garbage host: answers every datagram on UDP 161.
const GARBAGE_RESPONDER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 161))
reply = bytes.fromhex(sys.argv[2])
while True:
    _, peer = s.recvfrom(65535)
    s.sendto(reply, peer)
"#;

/// One LLDP neighbour the router reports, as discovery should read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabNeighbour {
    /// The router's port (its lldpLocPortId).
    pub local_port: String,
    /// The neighbour's `eth0` MAC address, `aa:bb:cc:dd:ee:ff`.
    pub chassis_id: String,
    pub port_id: String,
    pub port_descr: String,
    pub sys_name: String,
    pub management_address: Ipv4Addr,
}

/// The discovery lab; everything is stopped and removed on drop.
pub struct DiscoveryLab {
    // Fields drop in order: the agents and routes go before the namespaces.
    agents: Vec<Snmpd>,
    routes: Vec<String>,
    pub router: Host,
    /// The router's second address on its `eth0`.
    pub router_second: Ipv4Addr,
    pub switch: Host,
    pub v3: Host,
    pub icmp_only: Host,
    pub wrong_community: Host,
    pub garbage: Host,
    /// An address of the segment where nothing answers.
    pub silent: Ipv4Addr,
    lab: Lab,
}

impl DiscoveryLab {
    /// Builds the lab and returns once every agent answers; panics (naming the command or
    /// the agent) when a peer is missing: `apt-get install snmpd snmp`, `python3`.
    pub fn build() -> Self {
        let lab = Lab::new();
        let [router, switch, v3, icmp_only, wrong_community, garbage] =
            std::array::from_fn(|_| lab.add_host());
        let subnet = lab.gateway().octets()[2];
        let router_second = Ipv4Addr::new(10, 231, subnet, 200);
        router.run(
            "ip",
            &["addr", "add", &format!("{router_second}/24"), "dev", "eth0"],
        );
        let mut this = Self {
            agents: Vec::new(),
            routes: Vec::new(),
            router,
            router_second,
            switch,
            v3,
            icmp_only,
            wrong_community,
            garbage,
            silent: Ipv4Addr::new(10, 231, subnet, 250),
            lab,
        };
        this.start_agents();
        this.start_garbage_responder();
        this
    }

    /// The lab segment, `10.231.N.0/24`.
    pub fn subnet(&self) -> String {
        let [a, b, c, _] = self.lab.gateway().octets();
        format!("{a}.{b}.{c}.0/24")
    }

    /// The test process's address on the segment (it answers ICMP).
    pub fn gateway(&self) -> Ipv4Addr {
        self.lab.gateway()
    }

    /// The underlying lab (to add hosts or tap its traffic).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The addresses of the segment that answer ICMP, the gateway included, ascending.
    pub fn responders(&self) -> Vec<Ipv4Addr> {
        let mut all = vec![
            self.gateway(),
            self.router.addr,
            self.switch.addr,
            self.v3.addr,
            self.icmp_only.addr,
            self.wrong_community.addr,
            self.garbage.addr,
            self.router_second,
        ];
        all.sort();
        all
    }

    /// `host`'s LLDP chassis id: its `eth0` MAC address, `aa:bb:cc:dd:ee:ff`.
    pub fn chassis_id(&self, host: &Host) -> String {
        mac_of(host)
    }

    /// The neighbours in the router's LLDP tables.
    pub fn router_neighbours(&self) -> Vec<LabNeighbour> {
        vec![
            LabNeighbour {
                local_port: "Gi0/1".into(),
                chassis_id: self.chassis_id(&self.switch),
                port_id: "Gi1/0/24".into(),
                port_descr: "uplink to rtr-1".into(),
                sys_name: SWITCH_SYS_NAME.into(),
                management_address: self.switch.addr,
            },
            LabNeighbour {
                local_port: "Gi0/2".into(),
                chassis_id: self.chassis_id(&self.v3),
                // A port id of subtype macAddress: the server's NIC.
                port_id: self.chassis_id(&self.v3),
                port_descr: "eth0".into(),
                sys_name: V3_SYS_NAME.into(),
                management_address: self.v3.addr,
            },
        ]
    }

    /// Routes `cidr` (e.g. a /16 outside the lab subnet) from the test process to the
    /// router, which forwards nothing: every address in it is silent but those in
    /// `answering`, which the router takes as its own and answers ICMP for. The route goes
    /// with the lab. Two labs cannot route the same CIDR at once.
    pub fn route_silent(&mut self, cidr: &str, answering: &[Ipv4Addr]) {
        let via = self.router.addr.to_string();
        must(Command::new("ip").args(["route", "replace", cidr, "via", &via]));
        self.routes.push(cidr.to_owned());
        for address in answering {
            self.router.run(
                "ip",
                &["addr", "add", &format!("{address}/32"), "dev", "lo"],
            );
        }
    }

    fn start_agents(&mut self) {
        let router = SnmpdConfig::new()
            .community(COMMUNITY)
            .also_on(self.router_second)
            .line(&format!("sysobjectid .{ROUTER_SYS_OBJECT_ID}"))
            .line(&format!("sysname {ROUTER_SYS_NAME}"))
            .line(&format!("sysdescr {ROUTER_SYS_DESCR}"))
            .line(&format!("syslocation {ROUTER_SYS_LOCATION}"))
            .line(&format!(
                "override .1.3.6.1.2.1.47.1.1.1.1.11.1 octet_str \"{ROUTER_SERIAL}\""
            ));
        let router = lldp_local(router, &mac_of(&self.router));
        let router = lldp_neighbours(router, &self.router_neighbours());
        let switch = SnmpdConfig::new()
            .community(COMMUNITY)
            .line(&format!("sysobjectid .{SWITCH_SYS_OBJECT_ID}"))
            .line(&format!("sysname {SWITCH_SYS_NAME}"))
            .line(&format!("sysdescr {SWITCH_SYS_DESCR}"));
        let switch = lldp_local(switch, &mac_of(&self.switch));
        let v3 = SnmpdConfig::new()
            .user(
                V3_USER,
                "SHA",
                V3_AUTH_PASSWORD,
                Some(("AES", V3_PRIV_PASSWORD)),
            )
            .line(&format!("sysname {V3_SYS_NAME}"))
            .line("sysdescr Linux srv-1 6.1.0-18-amd64 x86_64");
        let v3 = lldp_local(v3, &mac_of(&self.v3));
        let wrong = SnmpdConfig::new()
            .community(OTHER_COMMUNITY)
            .line("sysname wrong-1");
        for (host, config) in [
            (self.router.clone(), router),
            (self.switch.clone(), switch),
            (self.v3.clone(), v3),
            (self.wrong_community.clone(), wrong),
        ] {
            self.agents.push(Snmpd::start(&host, config));
        }
    }

    /// Starts the garbage host's responder and waits until it answers.
    fn start_garbage_responder(&self) {
        let hex: String = GARBAGE.iter().map(|b| format!("{b:02x}")).collect();
        let mut command = self.garbage.command("python3");
        command.args([
            "-c",
            GARBAGE_RESPONDER,
            &self.garbage.addr.to_string(),
            &hex,
        ]);
        self.lab.spawn(command);
        let socket = UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 64];
        loop {
            let _ = socket.send_to(b"ready?", (self.garbage.addr, 161));
            if let Ok(len) = socket.recv(&mut buf)
                && &buf[..len] == GARBAGE
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the garbage responder on {} does not answer (is python3 installed?)",
                self.garbage.addr
            );
        }
    }
}

impl Drop for DiscoveryLab {
    fn drop(&mut self) {
        for cidr in &self.routes {
            let _ = Command::new("ip").args(["route", "del", cidr]).output();
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` as the `0xaabbccddeeff` octet string snmpd.conf takes.
/// lldpLocChassisIdSubtype macAddress(4) and lldpLocChassisId `mac` (`aa:bb:...`).
pub fn lldp_local(config: SnmpdConfig, mac: &str) -> SnmpdConfig {
    config
        .line(&format!("override {LLDP_LOC}.1.0 integer 4"))
        .line(&format!(
            "override {LLDP_LOC}.2.0 octet_str {}",
            hex_of_mac(mac)
        ))
}

/// lldpLocPortTable, lldpRemTable and lldpRemManAddrTable naming `neighbours`.
pub fn lldp_neighbours(mut config: SnmpdConfig, neighbours: &[LabNeighbour]) -> SnmpdConfig {
    for (n, neighbour) in neighbours.iter().enumerate() {
        let port = n + 1;
        let row = format!("0.{port}.1");
        let (port_subtype, port_id) = if neighbour.port_id.contains(':') {
            (3, hex_of_mac(&neighbour.port_id))
        } else {
            (5, format!("\"{}\"", neighbour.port_id))
        };
        let [a, b, c, d] = neighbour.management_address.octets();
        config = config
            .line(&format!("override {LLDP_LOC}.7.1.2.{port} integer 5"))
            .line(&format!(
                "override {LLDP_LOC}.7.1.3.{port} octet_str \"{}\"",
                neighbour.local_port
            ))
            .line(&format!("override {LLDP_REM}.4.{row} integer 4"))
            .line(&format!(
                "override {LLDP_REM}.5.{row} octet_str {}",
                hex_of_mac(&neighbour.chassis_id)
            ))
            .line(&format!(
                "override {LLDP_REM}.6.{row} integer {port_subtype}"
            ))
            .line(&format!("override {LLDP_REM}.7.{row} octet_str {port_id}"))
            .line(&format!(
                "override {LLDP_REM}.8.{row} octet_str \"{}\"",
                neighbour.port_descr
            ))
            .line(&format!(
                "override {LLDP_REM}.9.{row} octet_str \"{}\"",
                neighbour.sys_name
            ))
            // ifIndex(2) subtype, interface 1.
            .line(&format!(
                "override {LLDP_REM_MAN_ADDR}.3.{row}.1.4.{a}.{b}.{c}.{d} integer 2"
            ))
            .line(&format!(
                "override {LLDP_REM_MAN_ADDR}.4.{row}.1.4.{a}.{b}.{c}.{d} integer 1"
            ));
    }
    config
}

/// `host`'s `eth0` MAC address, `aa:bb:cc:dd:ee:ff`.
pub fn mac_of(host: &Host) -> String {
    let output = host.run("cat", &["/sys/class/net/eth0/address"]);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn hex_of_mac(mac: &str) -> String {
    format!("0x{}", mac.replace(':', ""))
}

fn must(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A site for the topology tests: the test process (the collector) — a router — a switch
/// and a server on a segment of their own that only the router routes to, each answering
/// SNMP v2c ([`COMMUNITY`]) with its LLDP chassis id; the router's LLDP table names the
/// collector (by `collector`, the name its Device has, and the test process's address), the
/// switch and the server. [`RoutedSite::cut_router`] takes the router off the collector's
/// segment: all three stop answering, as when a site's router dies.
pub struct RoutedSite {
    // Held for their drop, which goes first: the agents before the namespaces they run in.
    _agents: Vec<Snmpd>,
    pub router: Host,
    pub switch: Host,
    pub server: Host,
    lab: Lab,
}

impl RoutedSite {
    pub fn build(collector: &str) -> Self {
        let lab = Lab::new();
        let router = lab.add_host();
        let switch = lab.add_host_behind(&router);
        let server = lab.add_host_behind(&router);
        let root_mac =
            std::fs::read_to_string(format!("/sys/class/net/{}/address", lab.root_interface()))
                .unwrap_or_else(|e| panic!("read the lab interface's MAC address: {e}"));
        let neighbour = |port: &str, mac: String, name: &str, address: Ipv4Addr| LabNeighbour {
            local_port: port.into(),
            chassis_id: mac,
            port_id: "eth0".into(),
            port_descr: String::new(),
            sys_name: name.into(),
            management_address: address,
        };
        let neighbours = [
            neighbour(
                "Gi0/0",
                root_mac.trim().to_owned(),
                collector,
                lab.gateway(),
            ),
            neighbour("Gi0/1", mac_of(&switch), "sw-2", switch.addr),
            neighbour("Gi0/2", mac_of(&server), "srv-2", server.addr),
        ];
        let agent = |name: &str, host: &Host| {
            let config = SnmpdConfig::new()
                .community(COMMUNITY)
                .line(&format!("sysname {name}"));
            lldp_local(config, &mac_of(host))
        };
        let router_config = lldp_neighbours(
            agent("rtr-2", &router).line(&format!("sysobjectid .{ROUTER_SYS_OBJECT_ID}")),
            &neighbours,
        );
        let agents = vec![
            Snmpd::start(&router, router_config),
            Snmpd::start(&switch, agent("sw-2", &switch)),
            Snmpd::start(&server, agent("srv-2", &server)),
        ];
        Self {
            _agents: agents,
            router,
            switch,
            server,
            lab,
        }
    }

    /// The collector's segment and the one behind the router.
    pub fn subnets(&self) -> [String; 2] {
        let [a, b, c, _] = self.lab.gateway().octets();
        let [d, e, f, _] = self.switch.addr.octets();
        [format!("{a}.{b}.{c}.0/24"), format!("{d}.{e}.{f}.0/24")]
    }

    /// The test process's address on the router's segment.
    pub fn gateway(&self) -> Ipv4Addr {
        self.lab.gateway()
    }

    /// The router's link to the collector goes down.
    pub fn cut_router(&self) {
        self.router.run("ip", &["link", "set", "eth0", "down"]);
    }
}
