//! Compiled NetFlow v9/IPFIX templates: for each field a template declares, what it means
//! to a flow record (or to sampling) and where it sits in a data record, so that data
//! records decode by reading a few integers at known offsets instead of field by field.
//!
//! The templates themselves are parsed and cached by `netflow_parser`; this module keeps
//! a compiled copy of each one the parser accepted, per exporter scope, and drops it when
//! the parser would (same time to live) or when the exporter withdraws or redefines it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::record::FlowRecord;

/// What a field contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    SrcV4,
    DstV4,
    SrcV6,
    DstV6,
    Proto,
    SrcPort,
    DstPort,
    InIf,
    OutIf,
    /// Byte count; the lower number wins when a template has several.
    Bytes(u8),
    /// Packet count; the lower number wins.
    Packets(u8),
    /// A sampling rate carried by the record itself (samplingInterval,
    /// samplerRandomInterval, samplingPacketInterval).
    SamplingInterval,
    /// samplingPacketSpace: packets skipped between samplingPacketInterval runs.
    SamplingSpace,
    /// flowSamplerId / selectorId: which sampler's rate applies.
    SamplerId,
}

impl Role {
    /// The role of IANA information element `id` (also NetFlow v9's field type, for the
    /// ids they share), if it matters here.
    pub(crate) fn of(id: u16) -> Option<Self> {
        Some(match id {
            8 => Self::SrcV4,
            12 => Self::DstV4,
            27 => Self::SrcV6,
            28 => Self::DstV6,
            4 => Self::Proto,
            7 => Self::SrcPort,
            11 => Self::DstPort,
            10 => Self::InIf,
            14 => Self::OutIf,
            // octetDeltaCount, octetTotalCount, postOctetDeltaCount (v9 OUT_BYTES),
            // initiatorOctets + responderOctets (Cisco ASA NSEL).
            1 => Self::Bytes(0),
            85 => Self::Bytes(1),
            23 => Self::Bytes(2),
            231 | 232 => Self::Bytes(3),
            2 => Self::Packets(0),
            86 => Self::Packets(1),
            24 => Self::Packets(2),
            298 | 299 => Self::Packets(3),
            34 | 50 | 305 => Self::SamplingInterval,
            306 => Self::SamplingSpace,
            48 | 302 => Self::SamplerId,
            _ => return None,
        })
    }
}

/// A field that matters, at a fixed offset of the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    offset: usize,
    len: usize,
    role: Role,
}

/// How a template's records are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Every field has a fixed length: records are `record_len` bytes apart and the
    /// fields that matter sit at known offsets.
    Fixed {
        record_len: usize,
        slots: Box<[Slot]>,
    },
    /// Some field is variable-length (IPFIX length 65535): each record is walked.
    Variable { fields: Box<[(u16, Option<Role>)]> },
}

/// IPFIX marks a variable-length field with this length.
const VARIABLE: u16 = 65_535;

/// Longest record a template may describe (a datagram is at most 64 KiB).
const MAX_RECORD: usize = 65_535;

/// What decoding one data record gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Values {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub in_if: u32,
    pub out_if: u32,
    bytes: Option<(u8, u64)>,
    packets: Option<(u8, u64)>,
    /// Sampling interval carried by the record.
    pub interval: Option<u64>,
    /// samplingPacketSpace carried by the record.
    pub space: Option<u64>,
    pub sampler_id: Option<u64>,
}

impl Values {
    /// Sets `role` from a field's big-endian bytes.
    pub(crate) fn set_bytes(&mut self, role: Role, bytes: &[u8]) {
        match role {
            Role::SrcV4 | Role::SrcV6 | Role::DstV4 | Role::DstV6 => {
                if let Some(ip) = addr(bytes) {
                    self.set_addr(role, ip);
                }
            }
            _ => self.set_number(role, uint(bytes)),
        }
    }

    /// Sets an address role; a zero address never replaces one already set (templates
    /// with both IPv4 and IPv6 fields leave the unused family zero).
    pub(crate) fn set_addr(&mut self, role: Role, ip: IpAddr) {
        let slot = match role {
            Role::SrcV4 | Role::SrcV6 => &mut self.src,
            Role::DstV4 | Role::DstV6 => &mut self.dst,
            _ => return,
        };
        if slot.is_none() || !ip.is_unspecified() {
            *slot = Some(ip);
        }
    }

    /// Sets a numeric role (numbers wider than the role keep their low bits, as a
    /// reduced-size encoding would have).
    pub(crate) fn set_number(&mut self, role: Role, value: u64) {
        match role {
            Role::SrcV4 | Role::SrcV6 | Role::DstV4 | Role::DstV6 => {}
            Role::Proto => self.proto = value as u8,
            Role::SrcPort => self.src_port = value as u16,
            Role::DstPort => self.dst_port = value as u16,
            Role::InIf => self.in_if = value as u32,
            Role::OutIf => self.out_if = value as u32,
            Role::Bytes(rank) => self.bytes = best(self.bytes, rank, value),
            Role::Packets(rank) => self.packets = best(self.packets, rank, value),
            Role::SamplingInterval => self.interval = Some(value),
            Role::SamplingSpace => self.space = Some(value),
            Role::SamplerId => self.sampler_id = Some(value),
        }
    }

    /// Bytes and packets the record counts, before sampling.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.bytes.map_or(0, |b| b.1),
            self.packets.map_or(0, |p| p.1),
        )
    }

    /// A sampling rate the record states about itself.
    pub(crate) fn own_rate(&self) -> Option<u64> {
        rate(self.interval, self.space)
    }

    /// The flow record, or `None` without addresses (layer-2 or MPLS-only templates).
    pub(crate) fn record(&self, exporter: IpAddr, rate: u64) -> Option<FlowRecord> {
        let (bytes, packets) = self.counts();
        Some(FlowRecord {
            exporter,
            in_if: self.in_if,
            out_if: self.out_if,
            src: self.src?,
            dst: self.dst?,
            proto: self.proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            bytes: bytes.saturating_mul(rate),
            packets: packets.saturating_mul(rate),
        })
    }
}

/// Same rank adds up (initiator plus responder octets); a better rank replaces.
fn best(current: Option<(u8, u64)>, rank: u8, value: u64) -> Option<(u8, u64)> {
    match current {
        Some((r, v)) if r == rank => Some((r, v.saturating_add(value))),
        Some((r, v)) if r < rank => Some((r, v)),
        _ => Some((rank, value)),
    }
}

/// Packets counted per packet sampled: `interval` (1-in-N), or with a packet space,
/// (interval + space) / interval rounded to the nearest whole number.
pub(crate) fn rate(interval: Option<u64>, space: Option<u64>) -> Option<u64> {
    let interval = interval.filter(|&i| i > 0)?;
    Some(match space {
        Some(space) => (interval.saturating_add(space) + interval / 2) / interval,
        None => interval,
    })
}

/// A big-endian unsigned integer of up to 8 bytes (longer values keep their low 8).
pub(crate) fn uint(bytes: &[u8]) -> u64 {
    // The usual widths first: this runs for every field of every record.
    if let Ok(b) = <[u8; 4]>::try_from(bytes) {
        return u64::from(u32::from_be_bytes(b));
    }
    if let Ok(b) = <[u8; 2]>::try_from(bytes) {
        return u64::from(u16::from_be_bytes(b));
    }
    if let Ok(b) = <[u8; 8]>::try_from(bytes) {
        return u64::from_be_bytes(b);
    }
    let tail = &bytes[bytes.len().saturating_sub(8)..];
    tail.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b))
}

fn addr(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

impl Layout {
    /// Compiles a template's (element id, length, enterprise, role allowed) fields (see
    /// [`role_of_field`]).
    pub(crate) fn compile<I>(fields: I) -> Option<Self>
    where
        I: IntoIterator<Item = (u16, u16, bool, bool)>,
    {
        let mut entries = Vec::new();
        for (id, len, enterprise, role_allowed) in fields {
            entries.push((len, role_of_field(id, len, enterprise, role_allowed)));
        }
        if entries.is_empty() {
            return None;
        }
        if entries.iter().any(|(len, _)| *len == VARIABLE) {
            return Some(Self::Variable {
                fields: entries.into_boxed_slice(),
            });
        }
        let mut offset = 0usize;
        let mut slots = Vec::new();
        for (len, role) in entries {
            if let Some(role) = role {
                slots.push(Slot {
                    offset,
                    len: usize::from(len),
                    role,
                });
            }
            offset += usize::from(len);
        }
        // A record of zero bytes would never advance; one past a datagram never fits.
        if offset == 0 || offset > MAX_RECORD {
            return None;
        }
        Some(Self::Fixed {
            record_len: offset,
            slots: slots.into_boxed_slice(),
        })
    }

    /// Decodes every record of a data set's body (after its 4-byte header), passing each
    /// to `each`. Padding shorter than a record at the end is ignored; returns false when
    /// a variable-length record runs past the end (the rest is then skipped).
    pub(crate) fn decode(&self, mut body: &[u8], mut each: impl FnMut(&Values)) -> bool {
        match self {
            Self::Fixed { record_len, slots } => {
                while body.len() >= *record_len {
                    let (record, rest) = body.split_at(*record_len);
                    let mut values = Values::default();
                    for slot in slots.iter() {
                        values.set_bytes(slot.role, &record[slot.offset..slot.offset + slot.len]);
                    }
                    each(&values);
                    body = rest;
                }
                true
            }
            Self::Variable { fields } => {
                // RFC 7011: padding after the last record is shorter than the shortest record.
                while !body.is_empty() && body.iter().any(|&b| b != 0) {
                    let mut values = Values::default();
                    for (len, role) in fields.iter() {
                        let Some((len, header)) = field_length(body, *len) else {
                            return false;
                        };
                        let Some(value) = body.get(header..header + len) else {
                            return false;
                        };
                        if let Some(role) = role {
                            values.set_bytes(*role, value);
                        }
                        body = &body[header + len..];
                    }
                    each(&values);
                }
                true
            }
        }
    }
}

/// The role of a template field: none for enterprise elements, for options scope fields
/// (`role_allowed` false; in v9 their ids are scope types, not elements) and for fields
/// too short or too long for what their role reads (kept as padding).
pub(crate) fn role_of_field(
    id: u16,
    len: u16,
    enterprise: bool,
    role_allowed: bool,
) -> Option<Role> {
    if enterprise || !role_allowed {
        return None;
    }
    Role::of(id).filter(|role| len == VARIABLE || fits(*role, len))
}

/// Length of a field at the start of `body` and how many length octets precede it.
fn field_length(body: &[u8], declared: u16) -> Option<(usize, usize)> {
    if declared != VARIABLE {
        return Some((usize::from(declared), 0));
    }
    match body.first()? {
        255 => {
            let long = body.get(1..3)?;
            Some((usize::from(u16::from_be_bytes([long[0], long[1]])), 3))
        }
        &short => Some((usize::from(short), 1)),
    }
}

/// Whether a field of `len` bytes can hold what `role` reads.
fn fits(role: Role, len: u16) -> bool {
    match role {
        Role::SrcV4 | Role::DstV4 => len == 4,
        Role::SrcV6 | Role::DstV6 => len == 16,
        _ => (1..=8).contains(&len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::synth::{self, Flow};

    fn plain(fields: &[synth::Field]) -> Vec<(u16, u16, bool, bool)> {
        fields.iter().map(|f| (f.id, f.len, false, true)).collect()
    }

    #[test]
    fn fixed_layouts_read_every_record_of_a_set() {
        let layout = Layout::compile(plain(synth::JUNIPER_V4)).expect("layout");
        let flows: Vec<Flow> = (0..5).map(Flow::v4).collect();
        let mut body = Vec::new();
        for flow in &flows {
            synth::put_record(&mut body, synth::JUNIPER_V4, flow);
        }
        body.extend_from_slice(&[0, 0, 0]);
        let mut seen = Vec::new();
        assert!(layout.decode(&body, |v| {
            seen.push(v.record(IpAddr::from([192, 0, 2, 1]), 1))
        }));
        assert_eq!(seen.len(), 5);
        for (record, flow) in seen.iter().zip(&flows) {
            let record = record.expect("addresses");
            assert_eq!(
                (record.src, record.dst, record.proto),
                (flow.src, flow.dst, flow.proto)
            );
            assert_eq!(
                (record.src_port, record.dst_port),
                (flow.src_port, flow.dst_port)
            );
            assert_eq!((record.in_if, record.out_if), (flow.in_if, flow.out_if));
            assert_eq!((record.bytes, record.packets), (flow.bytes, flow.packets));
        }
    }

    #[test]
    fn variable_length_fields_are_walked() {
        // sourceIPv4Address, a variable-length string (3 bytes, then 300), octetDeltaCount.
        let layout = Layout::compile([
            (8, 4, false, true),
            (82, VARIABLE, false, true),
            (1, 4, false, true),
        ])
        .expect("layout");
        assert!(matches!(layout, Layout::Variable { .. }));
        let mut body = vec![10, 0, 0, 1, 3, b'a', b'b', b'c', 0, 0, 1, 0];
        body.extend_from_slice(&[10, 0, 0, 2, 255, 1, 44]);
        body.extend_from_slice(&[b'x'; 300]);
        body.extend_from_slice(&[0, 0, 0, 7, 0, 0]);
        let mut bytes = Vec::new();
        assert!(layout.decode(&body, |v| bytes.push((v.src, v.counts().0))));
        assert_eq!(
            bytes,
            vec![
                (Some(IpAddr::from([10, 0, 0, 1])), 256),
                (Some(IpAddr::from([10, 0, 0, 2])), 7)
            ]
        );
        // A length past the end stops the walk.
        assert!(!layout.decode(&[10, 0, 0, 1, 200, 1], |_| {}));
    }

    #[test]
    fn byte_counters_prefer_delta_and_add_up_nsel_halves() {
        let layout = Layout::compile([
            (231, 4, false, true),
            (232, 4, false, true),
            (8, 4, false, true),
            (12, 4, false, true),
        ])
        .expect("layout");
        let body = [0, 0, 0, 100, 0, 0, 0, 20, 1, 1, 1, 1, 2, 2, 2, 2];
        let mut counts = None;
        layout.decode(&body, |v| counts = Some(v.counts()));
        assert_eq!(counts, Some((120, 0)));
        assert_eq!(best(Some((1, 5)), 0, 9), Some((0, 9)));
        assert_eq!(best(Some((0, 5)), 2, 9), Some((0, 5)));
    }

    #[test]
    fn scope_enterprise_and_odd_length_fields_never_count() {
        // v9 scope type 1 (System) must not read as IN_BYTES; an enterprise element 1
        // is not octetDeltaCount; a 3-byte address is padding.
        let layout = Layout::compile([
            (1, 4, false, false),
            (1, 4, true, true),
            (8, 3, false, true),
            (34, 4, false, true),
        ])
        .expect("layout");
        let body = [0, 0, 0, 9, 0, 0, 0, 9, 1, 2, 3, 0, 0, 0, 100];
        let mut values = None;
        layout.decode(&body, |v| values = Some(*v));
        let values = values.expect("one record");
        assert_eq!(values.counts(), (0, 0));
        assert_eq!(values.src, None);
        assert_eq!(values.own_rate(), Some(100));
    }

    #[test]
    fn degenerate_templates_do_not_compile() {
        assert_eq!(Layout::compile(Vec::new()), None);
        assert_eq!(Layout::compile([(8, 0, false, true)]), None);
    }

    #[test]
    fn sampling_rates() {
        assert_eq!(rate(Some(100), None), Some(100));
        assert_eq!(rate(Some(0), None), None);
        assert_eq!(rate(None, Some(5)), None);
        // 1 packet sampled, 99 skipped: 1 in 100.
        assert_eq!(rate(Some(1), Some(99)), Some(100));
        assert_eq!(rate(Some(2), Some(3)), Some(3));
    }

    #[test]
    fn integers_of_any_width() {
        assert_eq!(uint(&[]), 0);
        assert_eq!(uint(&[1, 2]), 0x0102);
        assert_eq!(uint(&[9, 0, 0, 0, 0, 0, 0, 0, 5]), 5);
    }
}
