//! sFlow version 5 datagrams (sflow.org `sflow_version_5.txt`), decoded without
//! allocating: flow samples become [`FlowRecord`]s scaled by their sampling rate, generic
//! interface counter samples become [`InterfaceCounters`]. Everything else (extended
//! records, other enterprises' formats) is skipped by its length.
//!
//! A flow sample counts the packet once per sampling-rate packets: packets = rate and
//! bytes = the sampled packet's IP length × rate, the layer-3 bytes NetFlow counts too.
//! The exporter of an sFlow record is the agent address inside the datagram, which is
//! the switch's own identity even when the datagram was relayed or NATed.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    packet::{self, HeaderError, PacketSummary},
    record::FlowRecord,
};

/// UDP port sFlow agents send to by default.
pub const DEFAULT_PORT: u16 = 6343;

/// The generic interface counters (RFC 2233 ifTable/ifXTable values) an sFlow agent
/// exports every polling interval. Counters are cumulative as the agent read them; rates
/// come from the difference between two samples of the same interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Arrival time, Unix milliseconds.
    pub received_ms: i64,
    /// The agent (switch or router) whose interface this is.
    pub agent: IpAddr,
    pub sub_agent_id: u32,
    /// Agent uptime in milliseconds when the datagram was sent; a smaller value than
    /// last time means the counters restarted.
    pub uptime_ms: u32,
    /// Counter sample sequence number of this source.
    pub sequence: u32,
    pub if_index: u32,
    pub if_type: u32,
    /// ifSpeed in bits/s.
    pub speed_bps: u64,
    /// 0 unknown, 1 full duplex, 2 half duplex, 3 in, 4 out.
    pub direction: u32,
    /// Bit 0 admin up, bit 1 oper up.
    pub status: u32,
    pub in_octets: u64,
    pub in_ucast_pkts: u32,
    pub in_multicast_pkts: u32,
    pub in_broadcast_pkts: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast_pkts: u32,
    pub out_multicast_pkts: u32,
    pub out_broadcast_pkts: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous: u32,
}

/// What [`decode`] found in datagrams; reused between datagrams to avoid allocating.
#[derive(Debug, Default)]
pub struct SflowOutput {
    pub flows: Vec<FlowRecord>,
    pub counters: Vec<InterfaceCounters>,
    /// Flow samples without a usable IP header (ARP, truncated, unknown header protocol).
    pub unusable_samples: u64,
}

impl SflowOutput {
    pub fn clear(&mut self) {
        self.flows.clear();
        self.counters.clear();
        self.unusable_samples = 0;
    }
}

/// Why a datagram was refused; nothing of it is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SflowError {
    #[error("sFlow datagram of {len} bytes cut off in the {what} at offset {offset}")]
    Truncated {
        what: &'static str,
        offset: usize,
        len: usize,
    },
    #[error("sFlow version {0} is not supported (only 5)")]
    Version(u32),
    #[error("sFlow agent address type {0} is neither IPv4 (1) nor IPv6 (2)")]
    AddressType(u32),
}

impl SflowError {
    /// Short label for the `reason` of the dropped-datagrams counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Truncated { .. } => "truncated",
            Self::Version(_) => "unsupported_version",
            Self::AddressType(_) => "malformed",
        }
    }
}

/// Datagram-level fields every sample of it shares.
struct Agent {
    address: IpAddr,
    sub_agent_id: u32,
    uptime_ms: u32,
    received_ms: i64,
}

/// Decodes one datagram into `out` (appending). On error `out` is left as it was.
pub fn decode(
    datagram: &[u8],
    received_ms: i64,
    out: &mut SflowOutput,
) -> Result<IpAddr, SflowError> {
    let (flows, counters, unusable) = (out.flows.len(), out.counters.len(), out.unusable_samples);
    let result = decode_datagram(datagram, received_ms, out);
    if result.is_err() {
        out.flows.truncate(flows);
        out.counters.truncate(counters);
        out.unusable_samples = unusable;
    }
    result
}

fn decode_datagram(
    datagram: &[u8],
    received_ms: i64,
    out: &mut SflowOutput,
) -> Result<IpAddr, SflowError> {
    let mut r = Xdr::new(datagram);
    let version = r.u32("header")?;
    if version != 5 {
        return Err(SflowError::Version(version));
    }
    let address = r.address("agent address")?;
    let sub_agent_id = r.u32("header")?;
    r.u32("header")?; // datagram sequence number
    let agent = Agent {
        address,
        sub_agent_id,
        uptime_ms: r.u32("header")?,
        received_ms,
    };
    let samples = r.u32("header")?;
    for _ in 0..samples {
        let format = r.u32("sample header")?;
        let length = r.u32("sample header")?;
        let mut body = r.opaque(length, "sample")?;
        match format {
            1 => flow_sample(&mut body, false, &agent, out)?,
            3 => flow_sample(&mut body, true, &agent, out)?,
            2 => counter_sample(&mut body, false, &agent, out)?,
            4 => counter_sample(&mut body, true, &agent, out)?,
            // Other enterprises' samples (format's top 20 bits) and unknown formats.
            _ => {}
        }
    }
    Ok(agent.address)
}

fn flow_sample(
    r: &mut Xdr<'_>,
    expanded: bool,
    agent: &Agent,
    out: &mut SflowOutput,
) -> Result<(), SflowError> {
    r.u32("flow sample")?; // sequence number
    r.u32("flow sample")?; // source id (type and index)
    if expanded {
        r.u32("flow sample")?;
    }
    let rate = u64::from(r.u32("flow sample")?.max(1));
    r.u32("flow sample")?; // sample pool
    r.u32("flow sample")?; // drops
    let (in_if, out_if) = if expanded {
        let (in_format, in_value) = (r.u32("flow sample")?, r.u32("flow sample")?);
        let (out_format, out_value) = (r.u32("flow sample")?, r.u32("flow sample")?);
        (
            expanded_if(in_format, in_value),
            expanded_if(out_format, out_value),
        )
    } else {
        (
            compact_if(r.u32("flow sample")?),
            compact_if(r.u32("flow sample")?),
        )
    };
    let records = r.u32("flow sample")?;
    let mut found = None;
    for _ in 0..records {
        let format = r.u32("flow record header")?;
        let length = r.u32("flow record header")?;
        let mut body = r.opaque(length, "flow record")?;
        // The first usable record describes the packet; later ones would count it twice.
        if found.is_some() {
            continue;
        }
        found = match format {
            1 => raw_header(&mut body)?,
            3 => sampled_ip(&mut body, false)?,
            4 => sampled_ip(&mut body, true)?,
            _ => None,
        };
    }
    match found {
        Some(packet) => out.flows.push(FlowRecord {
            exporter: agent.address,
            in_if,
            out_if,
            src: packet.src,
            dst: packet.dst,
            proto: packet.proto,
            src_port: packet.src_port,
            dst_port: packet.dst_port,
            bytes: u64::from(packet.ip_len).saturating_mul(rate),
            packets: rate,
        }),
        None => out.unusable_samples += 1,
    }
    Ok(())
}

/// Compact interface field: top two bits are the format, 0 meaning an ifIndex, and
/// 0x3FFFFFFF meaning unknown.
fn compact_if(value: u32) -> u32 {
    match (value >> 30, value & 0x3fff_ffff) {
        (0, 0x3fff_ffff) => 0,
        (0, index) => index,
        _ => 0,
    }
}

fn expanded_if(format: u32, value: u32) -> u32 {
    match (format, value) {
        (0, 0x3fff_ffff) => 0,
        (0, index) => index,
        _ => 0,
    }
}

/// Raw packet header record: header protocol, frame length, stripped, header bytes.
fn raw_header(r: &mut Xdr<'_>) -> Result<Option<PacketSummary>, SflowError> {
    let protocol = r.u32("raw packet header")?;
    let frame_length = r.u32("raw packet header")?;
    let stripped = r.u32("raw packet header")?;
    let header_length = r.u32("raw packet header")?;
    let header = r.opaque(header_length, "raw packet header")?.rest();
    let parsed: Result<PacketSummary, HeaderError> = match protocol {
        1 => packet::parse_ethernet(header),
        11 => packet::parse_ipv4(header),
        12 => packet::parse_ipv6(header),
        _ => return Ok(None),
    };
    Ok(parsed.ok().map(|mut summary| {
        // IPv4 total length 0 is how TSO/jumbo packets show; the frame length is then the best guess.
        if summary.ip_len == 0 {
            summary.ip_len = frame_length.saturating_sub(stripped);
        }
        summary
    }))
}

/// Sampled IPv4 (format 3) and IPv6 (format 4) records: the key already decoded by the agent.
fn sampled_ip(r: &mut Xdr<'_>, v6: bool) -> Result<Option<PacketSummary>, SflowError> {
    let what = if v6 { "sampled IPv6" } else { "sampled IPv4" };
    let ip_len = r.u32(what)?;
    let proto = r.u32(what)?;
    let (src, dst) = if v6 {
        (IpAddr::V6(r.ipv6(what)?), IpAddr::V6(r.ipv6(what)?))
    } else {
        (IpAddr::V4(r.ipv4(what)?), IpAddr::V4(r.ipv4(what)?))
    };
    let src_port = r.u32(what)?;
    let dst_port = r.u32(what)?;
    Ok(Some(PacketSummary {
        src,
        dst,
        proto: u8::try_from(proto).unwrap_or(0),
        src_port: u16::try_from(src_port).unwrap_or(0),
        dst_port: u16::try_from(dst_port).unwrap_or(0),
        ip_len,
    }))
}

fn counter_sample(
    r: &mut Xdr<'_>,
    expanded: bool,
    agent: &Agent,
    out: &mut SflowOutput,
) -> Result<(), SflowError> {
    let sequence = r.u32("counter sample")?;
    r.u32("counter sample")?; // source id (type and index)
    if expanded {
        r.u32("counter sample")?;
    }
    let records = r.u32("counter sample")?;
    for _ in 0..records {
        let format = r.u32("counter record header")?;
        let length = r.u32("counter record header")?;
        let mut body = r.opaque(length, "counter record")?;
        if format == 1 {
            out.counters
                .push(generic_counters(&mut body, sequence, agent)?);
        }
    }
    Ok(())
}

fn generic_counters(
    r: &mut Xdr<'_>,
    sequence: u32,
    agent: &Agent,
) -> Result<InterfaceCounters, SflowError> {
    const WHAT: &str = "generic interface counters";
    Ok(InterfaceCounters {
        received_ms: agent.received_ms,
        agent: agent.address,
        sub_agent_id: agent.sub_agent_id,
        uptime_ms: agent.uptime_ms,
        sequence,
        if_index: r.u32(WHAT)?,
        if_type: r.u32(WHAT)?,
        speed_bps: r.u64(WHAT)?,
        direction: r.u32(WHAT)?,
        status: r.u32(WHAT)?,
        in_octets: r.u64(WHAT)?,
        in_ucast_pkts: r.u32(WHAT)?,
        in_multicast_pkts: r.u32(WHAT)?,
        in_broadcast_pkts: r.u32(WHAT)?,
        in_discards: r.u32(WHAT)?,
        in_errors: r.u32(WHAT)?,
        in_unknown_protos: r.u32(WHAT)?,
        out_octets: r.u64(WHAT)?,
        out_ucast_pkts: r.u32(WHAT)?,
        out_multicast_pkts: r.u32(WHAT)?,
        out_broadcast_pkts: r.u32(WHAT)?,
        out_discards: r.u32(WHAT)?,
        out_errors: r.u32(WHAT)?,
        promiscuous: r.u32(WHAT)?,
    })
}

/// Big-endian XDR reader over a part of the datagram; offsets in errors are from the
/// datagram's start.
struct Xdr<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the datagram.
    base: usize,
    /// Length of the whole datagram.
    total: usize,
}

impl<'a> Xdr<'a> {
    fn new(datagram: &'a [u8]) -> Self {
        Self {
            buf: datagram,
            pos: 0,
            base: 0,
            total: datagram.len(),
        }
    }

    fn truncated(&self, what: &'static str) -> SflowError {
        SflowError::Truncated {
            what,
            offset: self.base + self.pos,
            len: self.total,
        }
    }

    fn bytes<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], SflowError> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or_else(|| self.truncated(what))?;
        self.pos += N;
        Ok(bytes)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, SflowError> {
        self.bytes::<4>(what).map(u32::from_be_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, SflowError> {
        self.bytes::<8>(what).map(u64::from_be_bytes)
    }

    fn ipv4(&mut self, what: &'static str) -> Result<Ipv4Addr, SflowError> {
        self.bytes::<4>(what).map(Ipv4Addr::from)
    }

    fn ipv6(&mut self, what: &'static str) -> Result<Ipv6Addr, SflowError> {
        self.bytes::<16>(what).map(Ipv6Addr::from)
    }

    fn address(&mut self, what: &'static str) -> Result<IpAddr, SflowError> {
        match self.u32(what)? {
            1 => self.ipv4(what).map(IpAddr::V4),
            2 => self.ipv6(what).map(IpAddr::V6),
            other => Err(SflowError::AddressType(other)),
        }
    }

    /// The next `length` bytes as their own reader, then the XDR padding to 4 bytes.
    fn opaque(&mut self, length: u32, what: &'static str) -> Result<Xdr<'a>, SflowError> {
        let length = usize::try_from(length).map_err(|_| self.truncated(what))?;
        let left = self.buf.len() - self.pos;
        if left < length {
            return Err(self.truncated(what));
        }
        let sub = Xdr {
            buf: &self.buf[self.pos..self.pos + length],
            pos: 0,
            base: self.base + self.pos,
            total: self.total,
        };
        // Some agents leave out the padding of the last opaque of a record.
        let padded = length.saturating_add(3) & !3;
        self.pos += padded.min(left);
        Ok(sub)
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::synth::{SflowBuilder as Builder, ipv4_frame};

    #[test]
    fn flow_samples_scale_by_the_sampling_rate() {
        let frame = ipv4_frame(&[100], 6, [10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, 1400);
        let datagram = Builder::default()
            .flow(512, 3, 0x3fff_ffff, &frame, 1422)
            .build([192, 0, 2, 1]);
        let mut out = SflowOutput::default();
        let agent = decode(&datagram, 0, &mut out).expect("decode");
        assert_eq!(agent, IpAddr::from([192, 0, 2, 1]));
        assert_eq!(
            out.flows,
            vec![FlowRecord {
                exporter: agent,
                in_if: 3,
                out_if: 0,
                src: IpAddr::from([10, 0, 0, 1]),
                dst: IpAddr::from([10, 0, 0, 2]),
                proto: 6,
                src_port: 40000,
                dst_port: 443,
                bytes: 1400 * 512,
                packets: 512,
            }]
        );
    }

    #[test]
    fn counter_samples_become_interface_counters() {
        let datagram = Builder::default()
            .counters(7, 1 << 40, 99)
            .build([192, 0, 2, 9]);
        let mut out = SflowOutput::default();
        decode(&datagram, 1_000, &mut out).expect("decode");
        assert!(out.flows.is_empty());
        let counters = &out.counters[0];
        assert_eq!(
            (counters.if_index, counters.in_octets, counters.out_octets),
            (7, 1 << 40, 99)
        );
        assert_eq!(
            (counters.speed_bps, counters.status, counters.uptime_ms),
            (1_000_000_000, 3, 123_456)
        );
        assert_eq!(
            (
                counters.in_ucast_pkts,
                counters.in_unknown_protos,
                counters.promiscuous
            ),
            (1, 6, 16)
        );
        assert_eq!(counters.received_ms, 1_000);
    }

    #[test]
    fn every_generic_counter_field_decodes() {
        let expected = InterfaceCounters {
            received_ms: 5,
            agent: IpAddr::from([192, 0, 2, 7]),
            sub_agent_id: 0,
            uptime_ms: 7_000_000,
            sequence: 77,
            if_index: 12,
            if_type: 6,
            speed_bps: 10_000_000_000,
            direction: 1,
            status: 3,
            in_octets: u64::MAX - 1,
            in_ucast_pkts: 1,
            in_multicast_pkts: 2,
            in_broadcast_pkts: 3,
            in_discards: 4,
            in_errors: 5,
            in_unknown_protos: 6,
            out_octets: 1 << 33,
            out_ucast_pkts: 7,
            out_multicast_pkts: 8,
            out_broadcast_pkts: 9,
            out_discards: 10,
            out_errors: 11,
            promiscuous: 2,
        };
        let datagram = Builder::default()
            .interface_counters(&expected)
            .uptime(7_000_000)
            .build([192, 0, 2, 7]);
        let mut out = SflowOutput::default();
        decode(&datagram, 5, &mut out).expect("decode");
        assert_eq!(out.counters, vec![expected]);
    }

    #[test]
    fn non_ip_samples_are_counted_not_kept() {
        let mut arp = ipv4_frame(&[], 6, [0; 4], [0; 4], 0, 0, 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let datagram = Builder::default()
            .flow(1, 1, 2, &arp, 64)
            .build([192, 0, 2, 1]);
        let mut out = SflowOutput::default();
        decode(&datagram, 0, &mut out).expect("decode");
        assert_eq!((out.flows.len(), out.unusable_samples), (0, 1));
    }

    #[test]
    fn malformed_datagrams_leave_nothing_behind() {
        let frame = ipv4_frame(&[], 17, [10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 100);
        let datagram = Builder::default()
            .flow(1, 1, 2, &frame, 100)
            .counters(1, 2, 3)
            .flow(1, 1, 2, &frame, 100)
            .build([192, 0, 2, 1]);
        let mut out = SflowOutput::default();
        for len in 0..datagram.len() {
            let error = decode(&datagram[..len], 0, &mut out).expect_err("cut off");
            assert_eq!(error.reason(), "truncated", "{error}");
            assert!(out.flows.is_empty() && out.counters.is_empty());
        }
        let mut v4 = datagram.clone();
        v4[3] = 4;
        assert_eq!(decode(&v4, 0, &mut out), Err(SflowError::Version(4)));
        let mut bad_address = datagram.clone();
        bad_address[7] = 9;
        assert_eq!(
            decode(&bad_address, 0, &mut out),
            Err(SflowError::AddressType(9))
        );
        // A sample length far past the end.
        let mut long = datagram;
        long[32..36].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&long, 0, &mut out),
            Err(SflowError::Truncated { what: "sample", .. })
        ));
    }

    #[test]
    fn interface_fields_decode_their_formats() {
        assert_eq!(compact_if(5), 5);
        assert_eq!(compact_if(0x3fff_ffff), 0);
        assert_eq!(compact_if((2 << 30) | 3), 0);
        assert_eq!(expanded_if(0, 70_000_000), 70_000_000);
        assert_eq!(expanded_if(1, 5), 0);
    }
}
