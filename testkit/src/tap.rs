//! What the test process sends into a lab, seen on the wire: a packet socket on the lab's
//! root-side interface records each outgoing IPv4 probe (ICMP echo request, UDP datagram)
//! with the time it left, so that a test can check a rate limit independently of the code
//! that enforces it. Needs root (CAP_NET_RAW).
use std::{
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::sys::{
    socket::{
        AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket,
        sockopt::ReceiveTimeout,
    },
    time::{TimeVal, TimeValLike},
};

use crate::netns::Lab;

/// `sll_pkttype` of a packet this host sent.
const PACKET_OUTGOING: u8 = 4;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_ICMP: u8 = 1;
const PROTO_UDP: u8 = 17;
const ICMP_ECHO_REQUEST: u8 = 8;
/// How often the recording thread looks at its stop flag while nothing arrives.
const POLL: Duration = Duration::from_millis(50);

/// A probe packet that left for the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    IcmpEcho,
    /// A UDP datagram to this port.
    Udp(u16),
}

/// Records the probes leaving for a lab until dropped.
pub struct PacketTap {
    seen: Arc<Mutex<Vec<(Instant, Probe)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacketTap {
    /// Starts recording what leaves through `lab`'s root-side interface; panics when the
    /// packet socket cannot be opened.
    pub fn start(lab: &Lab) -> Self {
        let interface = lab.root_interface();
        let ifindex: usize = std::fs::read_to_string(format!("/sys/class/net/{interface}/ifindex"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("ifindex of {interface}"));
        // All protocols: only such a socket sees outgoing packets, not one bound to IPv4.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .unwrap_or_else(|e| panic!("packet socket (needs root): {e}"));
        let poll = TimeVal::milliseconds(i64::try_from(POLL.as_millis()).unwrap_or(50));
        setsockopt(&fd, ReceiveTimeout, &poll).unwrap_or_else(|e| panic!("SO_RCVTIMEO: {e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, Some(from))) = recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf)
                    else {
                        continue;
                    };
                    if from.ifindex() != ifindex
                        || from.pkttype() != PACKET_OUTGOING
                        || u16::from_be(from.protocol()) != ETHERTYPE_IPV4
                    {
                        continue;
                    }
                    if let Some(probe) = probe(&buf[..len]) {
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((Instant::now(), probe));
                    }
                }
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The probes seen so far, in order.
    pub fn probes(&self) -> Vec<(Instant, Probe)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The most probes seen within any `window` (a sliding window over their times).
    pub fn most_within(&self, window: Duration) -> usize {
        let times: Vec<Instant> = self.probes().into_iter().map(|(t, _)| t).collect();
        let mut most = 0;
        let mut first = 0;
        for (last, t) in times.iter().enumerate() {
            while *t - times[first] >= window {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }
}

impl Drop for PacketTap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The probe in an IPv4 packet, if it is one.
fn probe(packet: &[u8]) -> Option<Probe> {
    let header = usize::from(packet.first()? & 0x0f) * 4;
    let payload = packet.get(header..)?;
    match *packet.get(9)? {
        PROTO_ICMP if *payload.first()? == ICMP_ECHO_REQUEST => Some(Probe::IcmpEcho),
        PROTO_UDP => Some(Probe::Udp(u16::from_be_bytes([
            *payload.get(2)?,
            *payload.get(3)?,
        ]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_read_from_ipv4_headers() {
        let mut echo = vec![0x45, 0, 0, 84, 0, 0, 0, 0, 64, PROTO_ICMP];
        echo.resize(20, 0);
        echo.extend([ICMP_ECHO_REQUEST, 0, 0, 0]);
        assert_eq!(probe(&echo), Some(Probe::IcmpEcho));
        let mut udp = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, PROTO_UDP];
        udp.resize(20, 0);
        udp.extend([0xc0, 0x00, 0x00, 0xa1]);
        assert_eq!(probe(&udp), Some(Probe::Udp(161)));
        let mut reply = echo.clone();
        reply[20] = 0;
        assert_eq!(probe(&reply), None);
        assert_eq!(probe(&[0x45]), None);
    }
}
