//! Synthetic exports shaped like real exporters' (softflowd, Juniper J-Flow): builders of
//! NetFlow v5, v9 and IPFIX datagrams, for tests, benchmarks and fuzzing seeds.
use std::net::IpAddr;

use super::sflow::InterfaceCounters;

/// A template field: information element id (enterprise bit included) and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub id: u16,
    pub len: u16,
}

const fn f(id: u16, len: u16) -> Field {
    Field { id, len }
}

/// softflowd's NetFlow v9 IPv4 template.
pub const SOFTFLOWD_V9_V4: &[Field] = &[
    f(8, 4),
    f(12, 4),
    f(21, 4),
    f(22, 4),
    f(1, 4),
    f(2, 4),
    f(10, 4),
    f(14, 4),
    f(7, 2),
    f(11, 2),
    f(4, 1),
    f(6, 1),
    f(60, 1),
    f(5, 1),
];

/// softflowd's IPFIX IPv4 template (millisecond timestamps instead of uptime).
pub const SOFTFLOWD_IPFIX_V4: &[Field] = &[
    f(8, 4),
    f(12, 4),
    f(153, 8),
    f(152, 8),
    f(1, 4),
    f(2, 4),
    f(10, 4),
    f(14, 4),
    f(7, 2),
    f(11, 2),
    f(4, 1),
    f(6, 1),
    f(60, 1),
    f(5, 1),
];

/// softflowd's IPv6 template (v9 and IPFIX alike).
pub const SOFTFLOWD_V6: &[Field] = &[
    f(27, 16),
    f(28, 16),
    f(21, 4),
    f(22, 4),
    f(1, 4),
    f(2, 4),
    f(10, 4),
    f(14, 4),
    f(7, 2),
    f(11, 2),
    f(4, 1),
    f(6, 1),
    f(60, 1),
    f(5, 1),
];

/// The IPv4 record of Juniper MX inline J-Flow (IPFIX and v9): 64-bit counters,
/// BGP and VLAN fields around the key.
pub const JUNIPER_V4: &[Field] = &[
    f(8, 4),
    f(12, 4),
    f(5, 1),
    f(4, 1),
    f(7, 2),
    f(11, 2),
    f(15, 4),
    f(10, 4),
    f(14, 4),
    f(9, 1),
    f(13, 1),
    f(6, 1),
    f(16, 4),
    f(17, 4),
    f(58, 2),
    f(1, 8),
    f(2, 8),
    f(152, 8),
    f(153, 8),
    f(136, 1),
    f(61, 1),
];

/// Juniper's IPv6 record.
pub const JUNIPER_V6: &[Field] = &[
    f(27, 16),
    f(28, 16),
    f(5, 1),
    f(4, 1),
    f(7, 2),
    f(11, 2),
    f(62, 16),
    f(10, 4),
    f(14, 4),
    f(29, 1),
    f(30, 1),
    f(6, 1),
    f(16, 4),
    f(17, 4),
    f(58, 2),
    f(1, 8),
    f(2, 8),
    f(152, 8),
    f(153, 8),
    f(136, 1),
    f(61, 1),
];

/// Juniper's sampling options: scope is the system (v9 scope type 1) or the
/// observation domain (IPFIX element 149); samplingInterval, samplingAlgorithm and
/// the active/idle timeouts follow.
pub const JUNIPER_SAMPLING_SCOPE_V9: &[Field] = &[f(1, 4)];
pub const JUNIPER_SAMPLING_SCOPE_IPFIX: &[Field] = &[f(149, 4)];
pub const JUNIPER_SAMPLING_OPTIONS: &[Field] = &[f(34, 4), f(35, 1), f(36, 2), f(37, 2)];

/// One flow to write into a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub in_if: u32,
    pub out_if: u32,
    pub bytes: u64,
    pub packets: u64,
}

impl Flow {
    /// The `n`th of a set of distinct IPv4 TCP flows, sizes varying with `n`.
    pub fn v4(n: u32) -> Self {
        Self {
            src: IpAddr::from((0x0a00_0000 | (n % 4096)).to_be_bytes()),
            dst: IpAddr::from((0xc633_6400 | (n % 251)).to_be_bytes()),
            proto: if n.is_multiple_of(5) { 17 } else { 6 },
            src_port: 1024 + (n % 50_000) as u16,
            dst_port: [443, 80, 53, 22][(n % 4) as usize],
            in_if: 1 + n % 4,
            out_if: 10 + n % 2,
            bytes: 40 + u64::from(n % 1460) * 37,
            packets: 1 + u64::from(n % 37),
        }
    }
}

/// A big-endian value cut to `len` bytes (the low bytes, as exporters encode reduced-size
/// counters).
fn put_uint(out: &mut Vec<u8>, value: u64, len: u16) {
    let len = usize::from(len);
    let bytes = value.to_be_bytes();
    if len <= 8 {
        out.extend_from_slice(&bytes[8 - len..]);
    } else {
        out.resize(out.len() + len - 8, 0);
        out.extend_from_slice(&bytes);
    }
}

fn put_addr(out: &mut Vec<u8>, addr: IpAddr, len: u16) {
    match addr {
        IpAddr::V4(v4) if len == 4 => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) if len == 16 => out.extend_from_slice(&v6.octets()),
        _ => out.resize(out.len() + usize::from(len), 0),
    }
}

/// Appends one data record of `fields` describing `flow`.
pub fn put_record(out: &mut Vec<u8>, fields: &[Field], flow: &Flow) {
    for field in fields {
        match field.id {
            8 | 12 | 27 | 28 => {
                let addr = if matches!(field.id, 8 | 27) {
                    flow.src
                } else {
                    flow.dst
                };
                put_addr(out, addr, field.len);
            }
            1 => put_uint(out, flow.bytes, field.len),
            2 => put_uint(out, flow.packets, field.len),
            4 => put_uint(out, u64::from(flow.proto), field.len),
            7 => put_uint(out, u64::from(flow.src_port), field.len),
            11 => put_uint(out, u64::from(flow.dst_port), field.len),
            10 => put_uint(out, u64::from(flow.in_if), field.len),
            14 => put_uint(out, u64::from(flow.out_if), field.len),
            60 => put_uint(out, if flow.src.is_ipv4() { 4 } else { 6 }, field.len),
            _ => put_uint(out, 0, field.len),
        }
    }
}

/// A NetFlow v5 datagram of `flows` (at most 30 in real exports).
pub fn v5(flows: &[Flow], sampling_interval: u16, unix_secs: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 48 * flows.len());
    out.extend_from_slice(&5u16.to_be_bytes());
    out.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    out.extend_from_slice(&1_000_000u32.to_be_bytes());
    out.extend_from_slice(&unix_secs.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    // Top two bits: mode 1 (deterministic) when sampling.
    let sampling = if sampling_interval > 1 {
        0x4000 | (sampling_interval & 0x3fff)
    } else {
        0
    };
    out.extend_from_slice(&sampling.to_be_bytes());
    for flow in flows {
        put_addr(&mut out, flow.src, 4);
        put_addr(&mut out, flow.dst, 4);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(flow.in_if as u16).to_be_bytes());
        out.extend_from_slice(&(flow.out_if as u16).to_be_bytes());
        out.extend_from_slice(&(flow.packets as u32).to_be_bytes());
        out.extend_from_slice(&(flow.bytes as u32).to_be_bytes());
        out.extend_from_slice(&900_000u32.to_be_bytes());
        out.extend_from_slice(&999_000u32.to_be_bytes());
        out.extend_from_slice(&flow.src_port.to_be_bytes());
        out.extend_from_slice(&flow.dst_port.to_be_bytes());
        out.extend_from_slice(&[0, 0x18, flow.proto, 0]);
        out.extend_from_slice(&[0; 8]);
    }
    out
}

/// Which of the two template-based protocols a [`Builder`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V9,
    Ipfix,
}

/// A NetFlow v9 or IPFIX datagram, set by set.
#[derive(Clone, Debug)]
pub struct Builder {
    version: Version,
    domain: u32,
    sets: Vec<u8>,
    records: u16,
}

impl Builder {
    /// `domain` is the v9 source id or the IPFIX observation domain.
    pub fn new(version: Version, domain: u32) -> Self {
        Self {
            version,
            domain,
            sets: Vec::new(),
            records: 0,
        }
    }

    fn set(&mut self, id: u16, body: &[u8]) {
        let padded = body.len().next_multiple_of(4);
        self.sets.extend_from_slice(&id.to_be_bytes());
        self.sets
            .extend_from_slice(&((padded + 4) as u16).to_be_bytes());
        self.sets.extend_from_slice(body);
        self.sets.resize(self.sets.len() + padded - body.len(), 0);
    }

    fn put_fields(body: &mut Vec<u8>, fields: &[Field]) {
        for field in fields {
            body.extend_from_slice(&field.id.to_be_bytes());
            body.extend_from_slice(&field.len.to_be_bytes());
            if field.id & 0x8000 != 0 {
                // Enterprise number of an enterprise-specific element (Juniper's).
                body.extend_from_slice(&2636u32.to_be_bytes());
            }
        }
    }

    /// A template set with one template.
    pub fn template(mut self, id: u16, fields: &[Field]) -> Self {
        let mut body = Vec::new();
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        Self::put_fields(&mut body, fields);
        let set_id = match self.version {
            Version::V9 => 0,
            Version::Ipfix => 2,
        };
        self.set(set_id, &body);
        self.records += 1;
        self
    }

    /// An options template set with one options template.
    pub fn options_template(mut self, id: u16, scope: &[Field], options: &[Field]) -> Self {
        let mut body = Vec::new();
        body.extend_from_slice(&id.to_be_bytes());
        match self.version {
            Version::V9 => {
                body.extend_from_slice(&((scope.len() * 4) as u16).to_be_bytes());
                body.extend_from_slice(&((options.len() * 4) as u16).to_be_bytes());
            }
            Version::Ipfix => {
                body.extend_from_slice(&((scope.len() + options.len()) as u16).to_be_bytes());
                body.extend_from_slice(&(scope.len() as u16).to_be_bytes());
            }
        }
        Self::put_fields(&mut body, scope);
        Self::put_fields(&mut body, options);
        let set_id = match self.version {
            Version::V9 => 1,
            Version::Ipfix => 3,
        };
        self.set(set_id, &body);
        self.records += 1;
        self
    }

    /// A data set of `flows` written with template `id` of `fields`.
    pub fn data(mut self, id: u16, fields: &[Field], flows: &[Flow]) -> Self {
        let mut body = Vec::new();
        for flow in flows {
            put_record(&mut body, fields, flow);
        }
        self.set(id, &body);
        self.records += flows.len() as u16;
        self
    }

    /// A data set of one record of plain integer `values`, one per field (options data).
    pub fn values(mut self, id: u16, fields: &[Field], values: &[u64]) -> Self {
        let mut body = Vec::new();
        for (field, value) in fields.iter().zip(values) {
            put_uint(&mut body, *value, field.len);
        }
        self.set(id, &body);
        self.records += 1;
        self
    }

    /// The datagram, header first.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.sets.len());
        match self.version {
            Version::V9 => {
                out.extend_from_slice(&9u16.to_be_bytes());
                out.extend_from_slice(&self.records.to_be_bytes());
                out.extend_from_slice(&1_000_000u32.to_be_bytes());
                out.extend_from_slice(&1_764_064_800u32.to_be_bytes());
                out.extend_from_slice(&7u32.to_be_bytes());
            }
            Version::Ipfix => {
                out.extend_from_slice(&10u16.to_be_bytes());
                out.extend_from_slice(&((16 + self.sets.len()) as u16).to_be_bytes());
                out.extend_from_slice(&1_764_064_800u32.to_be_bytes());
                out.extend_from_slice(&7u32.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.domain.to_be_bytes());
        out.extend_from_slice(&self.sets);
        out
    }
}

/// An Ethernet frame with optional VLAN tags around an IPv4 packet with a TCP or UDP
/// header.
pub fn ipv4_frame(
    vlans: &[u16],
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    total_len: u16,
) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for vlan in vlans {
        frame.extend_from_slice(&0x8100u16.to_be_bytes());
        frame.extend_from_slice(&vlan.to_be_bytes());
    }
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&total_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&sp.to_be_bytes());
    frame.extend_from_slice(&dp.to_be_bytes());
    frame.extend_from_slice(&[0; 16]);
    frame
}

/// Builds sFlow v5 datagrams field by field.
#[derive(Default)]
pub struct SflowBuilder {
    samples: Vec<Vec<u8>>,
    /// Agent uptime in milliseconds; 123,456 when not set.
    uptime_ms: Option<u32>,
}

fn put(buf: &mut Vec<u8>, value: u32) {
    buf.extend_from_slice(&value.to_be_bytes());
}

fn opaque(buf: &mut Vec<u8>, format: u32, body: &[u8]) {
    put(buf, format);
    put(buf, body.len() as u32);
    buf.extend_from_slice(body);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

impl SflowBuilder {
    /// A compact flow sample with one raw-header record of an Ethernet frame.
    pub fn flow(
        mut self,
        rate: u32,
        in_if: u32,
        out_if: u32,
        frame: &[u8],
        frame_length: u32,
    ) -> Self {
        let mut record = Vec::new();
        put(&mut record, 1);
        put(&mut record, frame_length);
        put(&mut record, 4);
        put(&mut record, frame.len() as u32);
        record.extend_from_slice(frame);
        record.resize(record.len().next_multiple_of(4), 0);
        let mut sample = Vec::new();
        for value in [7, 3, rate, 1000, 0, in_if, out_if, 1] {
            put(&mut sample, value);
        }
        opaque(&mut sample, 1, &record);
        let mut wrapped = Vec::new();
        opaque(&mut wrapped, 1, &sample);
        self.samples.push(wrapped);
        self
    }

    /// An expanded counter sample with one generic interface counters record.
    pub fn counters(mut self, if_index: u32, in_octets: u64, out_octets: u64) -> Self {
        let mut record = Vec::new();
        put(&mut record, if_index);
        put(&mut record, 6);
        record.extend_from_slice(&1_000_000_000u64.to_be_bytes());
        put(&mut record, 1);
        put(&mut record, 3);
        record.extend_from_slice(&in_octets.to_be_bytes());
        for v in 1..=6 {
            put(&mut record, v);
        }
        record.extend_from_slice(&out_octets.to_be_bytes());
        for v in 11..=16 {
            put(&mut record, v);
        }
        let mut sample = Vec::new();
        for value in [9, 0, if_index, 2] {
            put(&mut sample, value);
        }
        // An extended record of another enterprise first: must be skipped.
        opaque(&mut sample, (4300 << 12) | 7, &[1, 2, 3, 4, 5]);
        opaque(&mut sample, 1, &record);
        let mut wrapped = Vec::new();
        opaque(&mut wrapped, 4, &sample);
        self.samples.push(wrapped);
        self
    }

    /// An expanded counter sample with the generic interface counters of `c` (its agent,
    /// sub-agent, uptime and arrival time are the datagram's, not the sample's).
    pub fn interface_counters(mut self, c: &InterfaceCounters) -> Self {
        let mut record = Vec::new();
        put(&mut record, c.if_index);
        put(&mut record, c.if_type);
        record.extend_from_slice(&c.speed_bps.to_be_bytes());
        put(&mut record, c.direction);
        put(&mut record, c.status);
        record.extend_from_slice(&c.in_octets.to_be_bytes());
        for v in [
            c.in_ucast_pkts,
            c.in_multicast_pkts,
            c.in_broadcast_pkts,
            c.in_discards,
            c.in_errors,
            c.in_unknown_protos,
        ] {
            put(&mut record, v);
        }
        record.extend_from_slice(&c.out_octets.to_be_bytes());
        for v in [
            c.out_ucast_pkts,
            c.out_multicast_pkts,
            c.out_broadcast_pkts,
            c.out_discards,
            c.out_errors,
            c.promiscuous,
        ] {
            put(&mut record, v);
        }
        let mut sample = Vec::new();
        for value in [c.sequence, 0, c.if_index, 1] {
            put(&mut sample, value);
        }
        opaque(&mut sample, 1, &record);
        let mut wrapped = Vec::new();
        opaque(&mut wrapped, 4, &sample);
        self.samples.push(wrapped);
        self
    }

    /// The agent uptime the datagram carries, in milliseconds.
    pub fn uptime(mut self, uptime_ms: u32) -> Self {
        self.uptime_ms = Some(uptime_ms);
        self
    }

    pub fn build(&self, agent: [u8; 4]) -> Vec<u8> {
        let mut datagram = Vec::new();
        for value in [5, 1] {
            put(&mut datagram, value);
        }
        datagram.extend_from_slice(&agent);
        let uptime = self.uptime_ms.unwrap_or(123_456);
        for value in [0, 42, uptime, self.samples.len() as u32] {
            put(&mut datagram, value);
        }
        for sample in &self.samples {
            datagram.extend_from_slice(sample);
        }
        datagram
    }
}
