//! A lab host that answers pings late: the kernel's echo replies are switched off in the
//! host's namespace and a raw socket there answers each echo request after a fixed delay.
//! It stands in for `tc qdisc ... netem delay`, which kernels without `sch_netem` (such as
//! this project's CI machines) do not have.
use std::{
    collections::VecDeque,
    fs::File,
    io::Read,
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::Host;

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
/// The kernel's own echo replies, off while the responder runs.
const IGNORE_ECHO: &str = "/proc/sys/net/ipv4/icmp_echo_ignore_all";
/// How often the responder looks at its queue while no packet arrives.
const POLL: Duration = Duration::from_millis(1);

/// Answers echo requests to a host after `delay`; the kernel answers again when dropped.
pub struct DelayedEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DelayedEcho {
    /// Starts answering pings to `host` `delay` late; panics if that cannot be set up.
    pub fn start(host: &Host, delay: Duration) -> Self {
        let netns = File::open(format!("/run/netns/{}", host.ns))
            .unwrap_or_else(|e| panic!("open namespace {}: {e}", host.ns));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, started) = mpsc::channel();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                // Only this thread moves into the host's namespace, where /proc/sys/net is
                // the namespace's own.
                let socket = setns(&netns, CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
                    .and_then(|()| std::fs::write(IGNORE_ECHO, "1"))
                    .and_then(|()| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)))
                    .and_then(|socket| socket.set_read_timeout(Some(POLL)).map(|()| socket));
                let socket = match socket {
                    Ok(socket) => {
                        let _ = ready.send(Ok(()));
                        socket
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                respond(&socket, delay, &stop);
                let _ = std::fs::write(IGNORE_ECHO, "0");
            }
        });
        match started.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("delayed echo in {}: {e}", host.ns),
            Err(e) => panic!("delayed echo thread for {} died: {e}", host.ns),
        }
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DelayedEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn respond(socket: &Socket, delay: Duration, stop: &AtomicBool) {
    let mut pending: VecDeque<(Instant, Vec<u8>, SockAddr)> = VecDeque::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        while pending
            .front()
            .is_some_and(|(due, _, _)| *due <= Instant::now())
        {
            if let Some((_, reply, to)) = pending.pop_front() {
                let _ = socket.send_to(&reply, &to);
            }
        }
        let Ok(n) = (&*socket).read(&mut buf) else {
            continue;
        };
        if let Some((reply, from)) = reply_to(&buf[..n]) {
            let to = SockAddr::from(SocketAddrV4::new(from, 0));
            pending.push_back((Instant::now() + delay, reply, to));
        }
    }
}

/// The echo reply (ICMP message only) for an IPv4 packet holding an echo request, and the
/// address to send it to.
fn reply_to(packet: &[u8]) -> Option<(Vec<u8>, Ipv4Addr)> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let from: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let icmp = packet.get(header_len..)?;
    if icmp.len() < 8 || icmp[0] != ECHO_REQUEST || icmp[1] != 0 {
        return None;
    }
    let mut reply = icmp.to_vec();
    reply[0] = ECHO_REPLY;
    reply[2] = 0;
    reply[3] = 0;
    let sum = checksum(&reply);
    reply[2..4].copy_from_slice(&sum.to_be_bytes());
    Some((reply, Ipv4Addr::from(from)))
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_keep_id_sequence_and_payload_with_a_valid_checksum() {
        let mut packet = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let mut icmp = vec![
            ECHO_REQUEST,
            0,
            0,
            0,
            0x12,
            0x34,
            0,
            7,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
        ];
        let sum = checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        packet.extend_from_slice(&icmp);
        let (reply, from) = reply_to(&packet).expect("echo request");
        assert_eq!(from, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(reply[0], ECHO_REPLY);
        assert_eq!(reply[4..], icmp[4..]);
        assert_eq!(
            checksum(&reply),
            0,
            "a message with its checksum sums to zero"
        );
        packet[20] = ECHO_REPLY;
        assert!(reply_to(&packet).is_none(), "replies are not answered");
        assert!(reply_to(&packet[..22]).is_none(), "truncated");
    }
}
