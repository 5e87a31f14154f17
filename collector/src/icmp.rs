//! ICMP echo sockets through `surge-ping`, shared by the probes and discovery.
//!
//! A socket is a datagram ICMP socket where `net.ipv4.ping_group_range` allows it and a raw
//! one otherwise (root or CAP_NET_RAW): `surge-ping` tries them in that order. Identifiers
//! come from one counter per process, started somewhere different for every process, so
//! that neither two collectors nor two users of this one take each other's replies on a
//! raw socket (which sees every reply on the host).
use std::{
    io,
    net::IpAddr,
    sync::{
        LazyLock,
        atomic::{AtomicU16, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier};

/// Echo payload (with the 8-byte ICMP header, the 64 bytes `ping` sends by default).
pub(crate) const PAYLOAD: [u8; 56] = [0; 56];

/// ICMP type of an echo reply, IPv4 and IPv6.
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REPLY_V6: u8 = 129;

static NEXT_IDENT: LazyLock<AtomicU16> = LazyLock::new(|| AtomicU16::new(first_ident()));

/// The socket kind for `addr`'s family and the family's name for messages.
pub(crate) fn family(addr: IpAddr) -> (ICMP, &'static str) {
    match addr {
        IpAddr::V4(_) => (ICMP::V4, "IPv4"),
        IpAddr::V6(_) => (ICMP::V6, "IPv6"),
    }
}

/// Opens an ICMP socket of `kind` (datagram when allowed, else raw) with its receiving task.
pub(crate) fn open(kind: ICMP) -> io::Result<Client> {
    Client::new(&Config::builder().kind(kind).build())
}

/// The next echo identifier of this process.
pub(crate) fn next_ident() -> PingIdentifier {
    PingIdentifier(NEXT_IDENT.fetch_add(1, Ordering::Relaxed))
}

/// Whether `packet` is an echo reply: `surge-ping` also hands over ICMP errors quoting the
/// request (destination unreachable, time exceeded), which are not answers from the host.
pub(crate) fn is_echo_reply(packet: &IcmpPacket) -> bool {
    match packet {
        IcmpPacket::V4(packet) => packet.get_icmp_type().0 == ECHO_REPLY_V4,
        IcmpPacket::V6(packet) => packet.get_icmpv6_type().0 == ECHO_REPLY_V6,
    }
}

fn first_ident() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    (nanos ^ std::process::id()) as u16
}
