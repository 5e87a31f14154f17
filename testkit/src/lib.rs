//! Fixtures for the workspace's tests, written once: a PostgreSQL database per test
//! ([`pg::TestDb`]), network namespaces on a private bridge where real peers (snmpd,
//! softflowd, ping targets) run ([`netns::Lab`]), net-snmp agents on them
//! ([`snmpd::Snmpd`]), the network discovery scans ([`discovery_lab::DiscoveryLab`]), the
//! probes a test sends into a lab ([`tap::PacketTap`]), daemons stopped gracefully
//! ([`process::Daemon`]), hosts that answer pings late ([`echo::DelayedEcho`]), a server
//! that freezes ([`frozen::FreezableProxy`]), a recording HTTPS server
//! ([`receiver::Receiver`]), an SMTP server ([`smtp::SmtpPeer`]), a real operator seeded
//! through its agent API ([`operator::Operator`], [`operator::MadeUpAgent`]), a Debian root
//! with real apt and a package repository of the test's own ([`debian_root::DebianRoot`],
//! [`debian_root::AptRepo`]), and paths of workspace binaries.
pub mod bins;
pub mod debian_root;
pub mod discovery_lab;
pub mod echo;
pub mod frozen;
pub mod kube_emulator;
pub mod netns;
pub mod operator;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod smtp;
pub mod snmpd;
pub mod supervisor;
pub mod tap;
pub mod tls;

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A UDP port on `ip` that was free a moment ago.
pub fn free_udp_port(ip: std::net::IpAddr) -> u16 {
    std::net::UdpSocket::bind((ip, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("bind an ephemeral UDP port on {ip}: {e}"))
}
