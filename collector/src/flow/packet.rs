//! Just enough of a sampled packet's headers for a flow key: Ethernet with 802.1Q/802.1ad
//! tags, IPv4, IPv6 (extension headers skipped), and the ports of TCP, UDP, SCTP, DCCP
//! and UDP-Lite. sFlow agents send the first bytes of a frame (often 128), so anything
//! past the IP header may be cut off: a truncated transport header leaves the ports at 0
//! instead of failing the sample.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// More VLAN tags than this is not a real frame.
const MAX_VLAN_TAGS: usize = 4;
/// More IPv6 extension headers than this is not a real packet.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// The flow key and size of one sampled packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSummary {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// Length of the IP packet from its own header (IPv4 total length, IPv6 payload
    /// length plus the fixed header), the same bytes NetFlow counts.
    pub ip_len: u32,
}

/// Why a sampled header gave no flow key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("sampled header cut off inside the {0} header")]
    Truncated(&'static str),
    #[error("sampled frame is not IP (ethertype {0:#06x})")]
    NotIp(u16),
    #[error("sampled IP header has version {0}")]
    BadIpVersion(u8),
}

/// Parses an Ethernet frame (its FCS, if any, is ignored).
pub fn parse_ethernet(frame: &[u8]) -> Result<PacketSummary, HeaderError> {
    let mut ethertype = be16(frame, 12).ok_or(HeaderError::Truncated("ethernet"))?;
    let mut offset = 14;
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            break;
        }
        ethertype = be16(frame, offset + 2).ok_or(HeaderError::Truncated("802.1Q"))?;
        offset += 4;
    }
    let rest = frame
        .get(offset..)
        .ok_or(HeaderError::Truncated("ethernet"))?;
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(rest),
        ETHERTYPE_IPV6 => parse_ipv6(rest),
        other => Err(HeaderError::NotIp(other)),
    }
}

/// Parses a packet starting at its IP header, whichever version it is.
pub fn parse_ip(packet: &[u8]) -> Result<PacketSummary, HeaderError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(packet),
        Some(6) => parse_ipv6(packet),
        Some(v) => Err(HeaderError::BadIpVersion(v)),
        None => Err(HeaderError::Truncated("IP")),
    }
}

/// Parses a packet starting at its IPv4 header.
pub fn parse_ipv4(packet: &[u8]) -> Result<PacketSummary, HeaderError> {
    let header = packet.get(..20).ok_or(HeaderError::Truncated("IPv4"))?;
    let version = header[0] >> 4;
    if version != 4 {
        return Err(HeaderError::BadIpVersion(version));
    }
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = u16::from_be_bytes([header[2], header[3]]);
    // Only the first fragment carries the transport header.
    let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
    let proto = header[9];
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let (src_port, dst_port) = if fragment_offset == 0 && header_len >= 20 {
        ports(proto, packet.get(header_len..).unwrap_or_default())
    } else {
        (0, 0)
    };
    Ok(PacketSummary {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto,
        src_port,
        dst_port,
        ip_len: u32::from(total_len),
    })
}

/// Parses a packet starting at its IPv6 header, skipping extension headers.
pub fn parse_ipv6(packet: &[u8]) -> Result<PacketSummary, HeaderError> {
    let header = packet.get(..40).ok_or(HeaderError::Truncated("IPv6"))?;
    let version = header[0] >> 4;
    if version != 6 {
        return Err(HeaderError::BadIpVersion(version));
    }
    let payload_len = u16::from_be_bytes([header[4], header[5]]);
    let mut next = header[6];
    let src = ipv6_at(header, 8);
    let dst = ipv6_at(header, 24);
    let mut offset = 40;
    let mut transport = true;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units past the first 8.
            0 | 43 | 60 => {
                let Some(ext) = packet.get(offset..offset + 2) else {
                    transport = false;
                    break;
                };
                next = ext[0];
                offset += 8 + usize::from(ext[1]) * 8;
            }
            // Fragment header: fixed 8 octets; only the first fragment has ports.
            44 => {
                let Some(ext) = packet.get(offset..offset + 4) else {
                    transport = false;
                    break;
                };
                next = ext[0];
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    transport = false;
                }
                offset += 8;
            }
            // Authentication header: length in 4-octet units minus 2.
            51 => {
                let Some(ext) = packet.get(offset..offset + 2) else {
                    transport = false;
                    break;
                };
                next = ext[0];
                offset += (usize::from(ext[1]) + 2) * 4;
            }
            _ => break,
        }
    }
    let (src_port, dst_port) = if transport {
        ports(next, packet.get(offset..).unwrap_or_default())
    } else {
        (0, 0)
    };
    Ok(PacketSummary {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        proto: next,
        src_port,
        dst_port,
        ip_len: u32::from(payload_len) + 40,
    })
}

/// Source and destination port of the protocols that have them at the start of their
/// header; (0, 0) for the others or when the header was cut off.
fn ports(proto: u8, transport: &[u8]) -> (u16, u16) {
    match (proto, transport.get(..4)) {
        (6 | 17 | 33 | 132 | 136, Some(p)) => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        _ => (0, 0),
    }
}

fn be16(buf: &[u8], offset: usize) -> Option<u16> {
    let b = buf.get(offset..offset + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn ipv6_at(buf: &[u8], offset: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&buf[offset..offset + 16]);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::synth::ipv4_frame;

    fn ipv6_packet(next: u8, extensions: &[u8], sp: u16, dp: u16) -> Vec<u8> {
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend_from_slice(&100u16.to_be_bytes());
        packet.extend_from_slice(&[next, 64]);
        packet.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("ip").octets());
        packet.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().expect("ip").octets());
        packet.extend_from_slice(extensions);
        packet.extend_from_slice(&sp.to_be_bytes());
        packet.extend_from_slice(&dp.to_be_bytes());
        packet
    }

    #[test]
    fn ipv4_tcp_behind_two_vlan_tags() {
        let frame = ipv4_frame(&[10, 20], 6, [10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, 1500);
        let summary = parse_ethernet(&frame).expect("parse");
        assert_eq!(summary.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(summary.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(
            (summary.proto, summary.src_port, summary.dst_port),
            (6, 40000, 443)
        );
        assert_eq!(summary.ip_len, 1500);
    }

    #[test]
    fn ipv4_fragment_and_icmp_have_no_ports() {
        let mut frame = ipv4_frame(&[], 17, [1, 1, 1, 1], [2, 2, 2, 2], 53, 5353, 100);
        frame[14 + 6] = 0x00;
        frame[14 + 7] = 0x10;
        let summary = parse_ethernet(&frame).expect("parse");
        assert_eq!((summary.src_port, summary.dst_port), (0, 0));
        let icmp = ipv4_frame(&[], 1, [1, 1, 1, 1], [2, 2, 2, 2], 0x0800, 1, 84);
        assert_eq!(parse_ethernet(&icmp).expect("parse").dst_port, 0);
    }

    #[test]
    fn cut_off_transport_header_keeps_the_addresses() {
        let frame = ipv4_frame(&[], 6, [10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 60);
        let summary = parse_ethernet(&frame[..14 + 21]).expect("parse");
        assert_eq!(summary.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!((summary.src_port, summary.dst_port), (0, 0));
    }

    #[test]
    fn ipv6_skips_extension_headers() {
        // Hop-by-hop (8 octets) then a first fragment (offset 0) then UDP.
        let ext = [44, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 1];
        let summary = parse_ip(&ipv6_packet(0, &ext, 5000, 53)).expect("parse");
        assert_eq!(
            (summary.proto, summary.src_port, summary.dst_port),
            (17, 5000, 53)
        );
        assert_eq!(summary.ip_len, 140);
        assert_eq!(summary.src, "2001:db8::1".parse::<IpAddr>().expect("ip"));
        // A later fragment carries no ports.
        let later = [17, 0, 0, 0x08, 0, 0, 0, 1];
        let summary = parse_ip(&ipv6_packet(44, &later, 5000, 53)).expect("parse");
        assert_eq!((summary.proto, summary.src_port), (17, 0));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            parse_ethernet(&[0; 10]),
            Err(HeaderError::Truncated("ethernet"))
        );
        let mut arp = ipv4_frame(&[], 6, [0; 4], [0; 4], 0, 0, 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_ethernet(&arp), Err(HeaderError::NotIp(0x0806)));
        assert_eq!(parse_ip(&[0x50; 40]), Err(HeaderError::BadIpVersion(5)));
        assert_eq!(parse_ip(&[0x45; 19]), Err(HeaderError::Truncated("IPv4")));
        // Lengths pointing past the end in every extension header.
        for next in [0u8, 43, 44, 51, 60] {
            let mut packet = ipv6_packet(next, &[next, 255], 0, 0);
            packet.truncate(42);
            assert!(parse_ip(&packet).is_ok());
        }
        for len in 0..64 {
            let frame = ipv4_frame(&[7, 8, 9, 10, 11], 6, [1; 4], [2; 4], 1, 2, 3);
            let _ = parse_ethernet(&frame[..len.min(frame.len())]);
        }
    }
}
