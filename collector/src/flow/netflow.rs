//! NetFlow v5, v9 and IPFIX (Juniper's J-Flow is these same formats) decoded into
//! [`FlowRecord`]s with their sampling rate applied.
//!
//! `netflow_parser`'s [`AutoScopedParser`] is the authority on every datagram it sees:
//! it keeps templates per exporter address and v9 source id / IPFIX observation domain,
//! expires them, holds data records that arrive before their template and replays them
//! when it comes, and refuses malformed datagrams. Its generic output allocates per
//! record, though, so once it has accepted a template this module keeps a compiled copy
//! ([`Layout`]) and decodes datagrams made only of data sets of known templates directly,
//! reading the few fields a flow record needs at their offsets. Anything else (template
//! sets, options, unknown or expired templates, anything odd) goes to the parser.
//!
//! Sampling: v5 takes the header's sampling interval; v9/IPFIX take a rate the record
//! itself carries (samplingInterval 34, samplerRandomInterval 50, samplingPacketInterval
//! 305 with samplingPacketSpace 306), else the rate options data announced for the
//! record's sampler (flowSamplerId 48 / selectorId 302), else the scope's last announced
//! rate, else 1.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use foldhash::fast::RandomState;
use netflow_parser::{
    AutoScopedParser, FieldValue, NetflowPacket, NetflowParser, PendingFlowsConfig, TtlConfig,
    static_versions::v5::V5,
    variable_versions::{ipfix, v9},
};

use super::{
    record::FlowRecord,
    template::{Layout, Role, Values, role_of_field},
};

/// UDP port NetFlow/IPFIX exporters send to by default.
pub const DEFAULT_PORT: u16 = 2055;

/// Exporter scopes (address, version, domain) tracked at most; the least recently
/// created is forgotten first (spoofed sources cannot grow memory).
const MAX_SCOPES: usize = 4096;
/// Compiled templates per scope at most.
const MAX_TEMPLATES: usize = 1024;
/// Sampler ids remembered per scope at most.
const MAX_SAMPLERS: usize = 256;

/// Template and pending-record lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetflowSettings {
    /// How long a template lives without being refreshed.
    pub template_ttl: Duration,
    /// How long data records wait for their template.
    pub pending_ttl: Duration,
    /// Decode data sets of known templates directly (false: every record through
    /// `netflow_parser`'s generic output; slower, kept to compare the two).
    pub decode_directly: bool,
}

impl Default for NetflowSettings {
    fn default() -> Self {
        Self {
            template_ttl: Duration::from_secs(30 * 60),
            pending_ttl: Duration::from_secs(10),
            decode_directly: true,
        }
    }
}

/// Export protocol of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V5,
    V9,
    Ipfix,
}

impl Version {
    /// The `version` label of the flow metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::V5 => "v5",
            Self::V9 => "v9",
            Self::Ipfix => "ipfix",
        }
    }
}

/// What one datagram gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub version: Version,
    /// Flow records appended.
    pub records: u64,
    /// Data records without addresses (layer-2 or MPLS-only templates), not counted.
    pub no_address: u64,
    /// Data sets whose template is unknown and that the parser could not keep waiting.
    pub no_template: u64,
}

/// Why a datagram was refused; nothing of it is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetflowError {
    #[error("flow datagram of {0} bytes is too short for a version number")]
    Short(usize),
    #[error("flow datagram has version {0}; only NetFlow v5, v9 and IPFIX (10) are received")]
    Version(u16),
    #[error("NetFlow {version} datagram of {len} bytes refused: {message}")]
    Malformed {
        version: &'static str,
        len: usize,
        message: String,
    },
}

impl NetflowError {
    /// Short label for the `reason` of the dropped-datagrams counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Short(_) => "truncated",
            Self::Version(_) => "unsupported_version",
            Self::Malformed { .. } => "malformed",
        }
    }

    /// The `version` label of a refused datagram.
    pub fn version_label(&self) -> &'static str {
        match self {
            Self::Short(_) | Self::Version(_) => "unknown",
            Self::Malformed { version, .. } => version,
        }
    }
}

/// One exporter's export stream, as RFC 3954 and RFC 7011 scope templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Scope {
    source: SocketAddr,
    version: u16,
    domain: u32,
}

/// A compiled template and when it was last (re)defined.
struct Compiled {
    layout: Layout,
    /// Role of each field in template order, to read the parser's decoded records.
    roles: Box<[Option<Role>]>,
    /// Options data: records announce sampling instead of counting traffic.
    options: bool,
    defined: Instant,
}

impl Compiled {
    /// `fields` as (element id, length, enterprise, role allowed).
    fn new(fields: &[(u16, u16, bool, bool)], options: bool) -> Option<Self> {
        Some(Self {
            layout: Layout::compile(fields.iter().copied())?,
            roles: fields
                .iter()
                .map(|&(id, len, enterprise, allowed)| role_of_field(id, len, enterprise, allowed))
                .collect(),
            options,
            defined: Instant::now(),
        })
    }
}

#[derive(Default)]
struct ScopeState {
    templates: HashMap<u16, Compiled, RandomState>,
    /// Sampling rate per sampler id, from options data.
    samplers: HashMap<u64, u64, RandomState>,
    /// The last rate options data announced.
    default_rate: Option<u64>,
    created: Option<Instant>,
}

impl ScopeState {
    fn rate(&self, values: &Values) -> u64 {
        values
            .own_rate()
            .or_else(|| {
                values
                    .sampler_id
                    .and_then(|id| self.samplers.get(&id).copied())
            })
            .or(self.default_rate)
            .unwrap_or(1)
    }

    /// Remembers the sampling an options record announces.
    fn learn_sampling(&mut self, values: &Values) {
        let Some(rate) = values.own_rate() else {
            return;
        };
        if let Some(id) = values.sampler_id
            && (self.samplers.len() < MAX_SAMPLERS || self.samplers.contains_key(&id))
        {
            self.samplers.insert(id, rate);
        }
        self.default_rate = Some(rate);
    }
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Header length and scope domain (v9 source id, IPFIX observation domain) of a
/// datagram, if its header is whole (and, for IPFIX, its length is the datagram's).
fn header(version: Version, datagram: &[u8]) -> Option<(usize, u32)> {
    match version {
        Version::V5 => None,
        Version::V9 => Some((20, be32(datagram, 16)?)),
        Version::Ipfix => {
            (usize::from(be16(datagram, 2)?) == datagram.len()).then_some(())?;
            Some((16, be32(datagram, 12)?))
        }
    }
}

impl Version {
    fn number(self) -> u16 {
        match self {
            Self::V5 => 5,
            Self::V9 => 9,
            Self::Ipfix => 10,
        }
    }
}

/// Decodes the NetFlow/IPFIX datagrams of one receiving thread (templates are per
/// decoder: not shared between threads).
pub struct NetflowDecoder {
    parser: AutoScopedParser,
    scopes: HashMap<Scope, ScopeState, RandomState>,
    settings: NetflowSettings,
    /// The parser's count of pending data sets it dropped, per scope, when last looked at.
    pending_dropped: HashMap<Scope, u64, RandomState>,
}

impl NetflowDecoder {
    pub fn new(settings: &NetflowSettings) -> Self {
        Self {
            parser: new_parser(settings),
            scopes: HashMap::default(),
            settings: *settings,
            pending_dropped: HashMap::default(),
        }
    }

    /// Data sets that waited for a template that never came (or that the pending cache
    /// had no room for), per exporter, since the last call. The parser notices expired
    /// entries when it next touches its cache, so they are counted somewhat late.
    pub fn expired_pending(&mut self) -> Vec<(IpAddr, u64)> {
        let v9 = self.parser.v9_info().into_iter().map(|(key, info)| {
            let scope = Scope {
                source: key.addr,
                version: 9,
                domain: key.source_id,
            };
            (scope, info.v9.metrics.pending_dropped)
        });
        let ipfix = self.parser.ipfix_info().into_iter().map(|(key, info)| {
            let scope = Scope {
                source: key.addr,
                version: 10,
                domain: key.observation_domain_id,
            };
            (scope, info.ipfix.metrics.pending_dropped)
        });
        let now: Vec<(Scope, u64)> = v9.chain(ipfix).collect();
        let mut dropped: Vec<(IpAddr, u64)> = Vec::new();
        for (scope, total) in &now {
            let before = self.pending_dropped.get(scope).copied().unwrap_or(0);
            if *total > before {
                dropped.push((scope.source.ip(), total - before));
            }
        }
        // Sources the parser forgot are forgotten here too.
        self.pending_dropped = now.into_iter().collect();
        dropped
    }

    /// Decodes one datagram from `source`, appending its flow records to `out`. On error
    /// `out` is left as it was.
    pub fn decode(
        &mut self,
        source: SocketAddr,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<Decoded, NetflowError> {
        let version = match be16(datagram, 0) {
            Some(5) => Version::V5,
            Some(9) => Version::V9,
            Some(10) => Version::Ipfix,
            Some(other) => return Err(NetflowError::Version(other)),
            None => return Err(NetflowError::Short(datagram.len())),
        };
        if self.settings.decode_directly
            && let Some(decoded) = self.direct(source, version, datagram, out)
        {
            return Ok(decoded);
        }
        let start = out.len();
        let result = self.generic(source, version, datagram, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The fast path: a datagram made only of data sets whose templates are compiled and
    /// alive. `None` (and `out` untouched) sends it to the parser instead.
    fn direct(
        &self,
        source: SocketAddr,
        version: Version,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Option<Decoded> {
        let (header_len, domain) = header(version, datagram)?;
        let scope = Scope {
            source,
            version: version.number(),
            domain,
        };
        let state = self.scopes.get(&scope)?;
        let now = Instant::now();
        let exporter = source.ip();
        let start = out.len();
        let mut decoded = Decoded {
            version,
            records: 0,
            no_address: 0,
            no_template: 0,
        };
        let mut sets = datagram.get(header_len..)?;
        let mut whole = true;
        while let (Some(id), Some(len)) = (be16(sets, 0), be16(sets, 2)) {
            let len = usize::from(len);
            // Options data (sampling announcements, rare) takes the parser's path.
            let compiled = state.templates.get(&id).filter(|c| {
                !c.options && now.duration_since(c.defined) < self.settings.template_ttl
            });
            let (Some(compiled), true) = (compiled, (4..=sets.len()).contains(&len)) else {
                whole = false;
                break;
            };
            whole = compiled.layout.decode(&sets[4..len], |values| {
                match values.record(exporter, state.rate(values)) {
                    Some(record) => {
                        out.push(record);
                        decoded.records += 1;
                    }
                    None => decoded.no_address += 1,
                }
            });
            if !whole {
                break;
            }
            sets = &sets[len..];
        }
        // Anything but zero padding after the last set is for the parser to judge.
        if !whole || sets.iter().any(|&b| b != 0) {
            out.truncate(start);
            return None;
        }
        Some(decoded)
    }
}

/// The parser with this module's template and pending-record lifetimes.
fn new_parser(settings: &NetflowSettings) -> AutoScopedParser {
    let mut pending = PendingFlowsConfig::default();
    pending.ttl = Some(settings.pending_ttl);
    // TtlConfig refuses zero.
    let ttl = TtlConfig::new(settings.template_ttl.max(Duration::from_millis(1)));
    let builder = NetflowParser::builder()
        .with_allowed_versions(&[5, 9, 10])
        .with_ttl(ttl)
        .with_pending_flows(pending);
    match AutoScopedParser::try_with_builder(builder).and_then(|p| p.with_max_sources(MAX_SCOPES)) {
        Ok(parser) => parser,
        Err(error) => {
            // Only reachable if the settings above were invalid, which they are not.
            tracing::error!(%error, "flow parser settings refused; using its defaults");
            AutoScopedParser::new()
        }
    }
}

/// Reads a record the parser decoded, field by field in template order.
fn values_of<'a>(
    pairs: impl Iterator<Item = &'a FieldValue>,
    roles: &[Option<Role>],
    buf: &mut Vec<u8>,
) -> Values {
    let mut values = Values::default();
    for (value, role) in pairs.zip(roles) {
        if let Some(role) = role {
            buf.clear();
            if value.write_be_bytes(buf).is_ok() {
                values.set_bytes(*role, buf);
            }
        }
    }
    values
}

impl NetflowDecoder {
    /// The parser's path: every datagram the fast path does not take.
    fn generic(
        &mut self,
        source: SocketAddr,
        version: Version,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<Decoded, NetflowError> {
        let result = self.parser.parse_from_source(source, datagram);
        if let Some(error) = result.error {
            return Err(NetflowError::Malformed {
                version: version.label(),
                len: datagram.len(),
                message: error.to_string(),
            });
        }
        let mut decoded = Decoded {
            version,
            records: 0,
            no_address: 0,
            no_template: 0,
        };
        let exporter = source.ip();
        for packet in &result.packets {
            match packet {
                NetflowPacket::V5(v5) => v5_records(v5, exporter, out, &mut decoded),
                NetflowPacket::V9(packet) => {
                    let scope = Scope {
                        source,
                        version: 9,
                        domain: packet.header.source_id,
                    };
                    self.v9(scope, packet, out, &mut decoded);
                }
                NetflowPacket::IPFix(packet) => {
                    let scope = Scope {
                        source,
                        version: 10,
                        domain: packet.header.observation_domain_id,
                    };
                    self.ipfix(scope, packet, out, &mut decoded);
                }
                // Version 7 is refused by `with_allowed_versions` before it gets here.
                _ => {}
            }
        }
        Ok(decoded)
    }

    /// The state of `scope`, created if new; when too many scopes exist the oldest is
    /// forgotten (the parser caps its sources the same way).
    fn scope(&mut self, scope: Scope) -> &mut ScopeState {
        if !self.scopes.contains_key(&scope) && self.scopes.len() >= MAX_SCOPES {
            let oldest = self
                .scopes
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.scopes.remove(&oldest);
            }
        }
        self.scopes.entry(scope).or_insert_with(|| ScopeState {
            created: Some(Instant::now()),
            ..ScopeState::default()
        })
    }

    fn v9(
        &mut self,
        scope: Scope,
        packet: &v9::V9,
        out: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        let exporter = scope.source.ip();
        let state = self.scope(scope);
        // Templates first: records replayed from the pending cache may precede them.
        for set in &packet.flowsets {
            match &set.body {
                v9::FlowSetBody::Template(templates) => {
                    for t in &templates.templates {
                        let fields: Vec<_> = t
                            .fields
                            .iter()
                            .map(|f| (f.field_type_number, f.field_length, false, true))
                            .collect();
                        state.define(t.template_id, Compiled::new(&fields, false));
                    }
                }
                v9::FlowSetBody::OptionsTemplate(templates) => {
                    for t in &templates.templates {
                        let scope_fields = t
                            .scope_fields
                            .iter()
                            .map(|f| (f.field_type_number, f.field_length, false, false));
                        let option_fields = t
                            .option_fields
                            .iter()
                            .map(|f| (f.field_type_number, f.field_length, false, true));
                        let fields: Vec<_> = scope_fields.chain(option_fields).collect();
                        state.define(t.template_id, Compiled::new(&fields, true));
                    }
                }
                _ => {}
            }
        }
        let mut buf = Vec::with_capacity(16);
        for set in &packet.flowsets {
            match &set.body {
                v9::FlowSetBody::Data(data) => {
                    // Cloned: counting may update the scope's sampling (slow path only).
                    let Some((roles, options)) = state
                        .templates
                        .get(&set.header.flowset_id)
                        .map(|c| (c.roles.clone(), c.options))
                    else {
                        decoded.no_template += 1;
                        continue;
                    };
                    for record in &data.fields {
                        let values = values_of(record.iter().map(|(_, v)| v), &roles, &mut buf);
                        state.count(&values, options, exporter, out, decoded);
                    }
                }
                v9::FlowSetBody::OptionsData(data) => {
                    for record in &data.fields {
                        let mut values = Values::default();
                        for (field, value) in &record.options_fields {
                            if let Some(role) = Role::of(u16::from(*field)) {
                                buf.clear();
                                if value.write_be_bytes(&mut buf).is_ok() {
                                    values.set_bytes(role, &buf);
                                }
                            }
                        }
                        state.learn_sampling(&values);
                    }
                }
                v9::FlowSetBody::NoTemplate(_) => decoded.no_template += 1,
                _ => {}
            }
        }
    }

    fn ipfix(
        &mut self,
        scope: Scope,
        packet: &ipfix::IPFix,
        out: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        let exporter = scope.source.ip();
        let state = self.scope(scope);
        let template_fields =
            |fields: &[ipfix::TemplateField], scope_count: usize| -> Vec<(u16, u16, bool, bool)> {
                fields
                    .iter()
                    .enumerate()
                    .map(|(n, f)| {
                        (
                            f.field_type_number,
                            f.field_length,
                            f.enterprise_number.is_some(),
                            n >= scope_count,
                        )
                    })
                    .collect()
            };
        for set in &packet.flowsets {
            let (templates, options): (&[ipfix::Template], &[ipfix::OptionsTemplate]) =
                match &set.body {
                    ipfix::FlowSetBody::Template(t) => (std::slice::from_ref(t), &[]),
                    ipfix::FlowSetBody::Templates(t) => (t, &[]),
                    ipfix::FlowSetBody::OptionsTemplate(t) => (&[], std::slice::from_ref(t)),
                    ipfix::FlowSetBody::OptionsTemplates(t) => (&[], t),
                    _ => (&[], &[]),
                };
            for t in templates {
                // A template with no fields withdraws it (RFC 7011 8.1).
                state.define(
                    t.template_id,
                    Compiled::new(&template_fields(&t.fields, 0), false),
                );
            }
            for t in options {
                let fields = template_fields(&t.fields, usize::from(t.scope_field_count));
                state.define(t.template_id, Compiled::new(&fields, true));
            }
        }
        let mut buf = Vec::with_capacity(16);
        for set in &packet.flowsets {
            let records: &[Vec<ipfix::IPFixFieldPair>] = match &set.body {
                ipfix::FlowSetBody::Data(data) => &data.fields,
                ipfix::FlowSetBody::OptionsData(data) => &data.fields,
                ipfix::FlowSetBody::NoTemplate(_) => {
                    decoded.no_template += 1;
                    continue;
                }
                _ => continue,
            };
            let Some((roles, options)) = state
                .templates
                .get(&set.header.header_id)
                .map(|c| (c.roles.clone(), c.options))
            else {
                decoded.no_template += 1;
                continue;
            };
            for record in records {
                let values = values_of(record.iter().map(|(_, v)| v), &roles, &mut buf);
                state.count(&values, options, exporter, out, decoded);
            }
        }
    }
}

impl ScopeState {
    /// Stores (or, for `None`: withdraws) template `id`.
    fn define(&mut self, id: u16, compiled: Option<Compiled>) {
        match compiled {
            Some(compiled)
                if self.templates.len() < MAX_TEMPLATES || self.templates.contains_key(&id) =>
            {
                self.templates.insert(id, compiled);
            }
            Some(_) => {}
            None => {
                self.templates.remove(&id);
            }
        }
    }

    /// Counts a data record, or learns the sampling an options record announces.
    fn count(
        &mut self,
        values: &Values,
        options: bool,
        exporter: IpAddr,
        out: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        if options {
            self.learn_sampling(values);
            return;
        }
        match values.record(exporter, self.rate(values)) {
            Some(record) => {
                out.push(record);
                decoded.records += 1;
            }
            None => decoded.no_address += 1,
        }
    }
}

/// NetFlow v5 records; the header's low 14 bits of `sampling_interval` are the rate.
fn v5_records(v5: &V5, exporter: IpAddr, out: &mut Vec<FlowRecord>, decoded: &mut Decoded) {
    let rate = u64::from(v5.header.sampling_interval & 0x3fff).max(1);
    for flow in &v5.flowsets {
        out.push(FlowRecord {
            exporter,
            in_if: u32::from(flow.input),
            out_if: u32::from(flow.output),
            src: IpAddr::V4(flow.src_addr),
            dst: IpAddr::V4(flow.dst_addr),
            proto: flow.protocol_number,
            src_port: flow.src_port,
            dst_port: flow.dst_port,
            bytes: u64::from(flow.d_octets) * rate,
            packets: u64::from(flow.d_pkts) * rate,
        });
        decoded.records += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::synth::{self, Builder, Field, Flow, Version as V};

    const JUNIPER_DOMAIN: u32 = 524_288;

    fn source(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 50_000))
    }

    fn decode_all(
        decoder: &mut NetflowDecoder,
        from: SocketAddr,
        datagrams: &[Vec<u8>],
    ) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        for datagram in datagrams {
            decoder.decode(from, datagram, &mut out).expect("decode");
        }
        out
    }

    fn expected(flows: &[Flow], exporter: IpAddr, rate: u64) -> Vec<FlowRecord> {
        flows
            .iter()
            .map(|f| FlowRecord {
                exporter,
                in_if: f.in_if,
                out_if: f.out_if,
                src: f.src,
                dst: f.dst,
                proto: f.proto,
                src_port: f.src_port,
                dst_port: f.dst_port,
                bytes: f.bytes * rate,
                packets: f.packets * rate,
            })
            .collect()
    }

    fn flows(first: u32, n: u32) -> Vec<Flow> {
        (first..first + n).map(Flow::v4).collect()
    }

    #[test]
    fn v5_records_scale_by_the_header_sampling_interval() {
        let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
        let batch = flows(0, 30);
        let mut out = Vec::new();
        let decoded = decoder
            .decode(source(1), &synth::v5(&batch, 100, 1_764_064_800), &mut out)
            .expect("decode");
        assert_eq!((decoded.version, decoded.records), (Version::V5, 30));
        assert_eq!(out, expected(&batch, source(1).ip(), 100));
        out.clear();
        decoder
            .decode(source(1), &synth::v5(&batch, 0, 1), &mut out)
            .expect("decode");
        assert_eq!(out, expected(&batch, source(1).ip(), 1));
    }

    /// Template and data in one datagram go through the parser; data alone afterwards is
    /// decoded directly; both give the same records, as does the parser alone.
    #[test]
    fn softflowd_v9_and_ipfix_decode_the_same_directly_and_generically() {
        for (version, fields) in [
            (V::V9, synth::SOFTFLOWD_V9_V4),
            (V::Ipfix, synth::SOFTFLOWD_IPFIX_V4),
            (V::V9, synth::SOFTFLOWD_V6),
            (V::Ipfix, synth::SOFTFLOWD_V6),
        ] {
            let batch: Vec<Flow> = if fields == synth::SOFTFLOWD_V6 {
                flows(0, 20)
                    .into_iter()
                    .map(|mut f| {
                        f.src = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, f.src_port]);
                        f.dst = "2001:db8::53".parse().expect("ip");
                        f
                    })
                    .collect()
            } else {
                flows(0, 20)
            };
            let first = Builder::new(version, 0)
                .template(256, fields)
                .data(256, fields, &batch[..10])
                .build();
            let second = Builder::new(version, 0)
                .data(256, fields, &batch[10..])
                .build();
            let datagrams = [first, second];
            let mut direct = NetflowDecoder::new(&NetflowSettings::default());
            let mut generic = NetflowDecoder::new(&NetflowSettings {
                decode_directly: false,
                ..NetflowSettings::default()
            });
            let want = expected(&batch, source(1).ip(), 1);
            assert_eq!(
                decode_all(&mut direct, source(1), &datagrams),
                want,
                "{version:?}"
            );
            assert_eq!(
                decode_all(&mut generic, source(1), &datagrams),
                want,
                "{version:?}"
            );
            // The second datagram really took the direct path.
            let mut out = Vec::new();
            assert!(
                direct
                    .direct(
                        source(1),
                        if version == V::V9 {
                            Version::V9
                        } else {
                            Version::Ipfix
                        },
                        &datagrams[1],
                        &mut out
                    )
                    .is_some()
            );
        }
    }

    /// Juniper J-Flow: non-zero observation domain, 64-bit counters, IPv4 and IPv6
    /// templates, and a sampling rate announced in options data (system scope in v9,
    /// observation domain scope in IPFIX).
    #[test]
    fn juniper_exports_apply_the_announced_sampling_rate() {
        for (version, scope) in [
            (V::V9, synth::JUNIPER_SAMPLING_SCOPE_V9),
            (V::Ipfix, synth::JUNIPER_SAMPLING_SCOPE_IPFIX),
        ] {
            let v4 = flows(0, 8);
            let v6: Vec<Flow> = flows(8, 4)
                .into_iter()
                .map(|mut f| {
                    f.src = "2001:db8::1".parse().expect("ip");
                    f.dst = "2001:db8::2".parse().expect("ip");
                    f
                })
                .collect();
            let option_fields = [scope, synth::JUNIPER_SAMPLING_OPTIONS].concat();
            let datagrams = [
                Builder::new(version, JUNIPER_DOMAIN)
                    .template(256, synth::JUNIPER_V4)
                    .template(257, synth::JUNIPER_V6)
                    .options_template(258, scope, synth::JUNIPER_SAMPLING_OPTIONS)
                    .build(),
                Builder::new(version, JUNIPER_DOMAIN)
                    .values(258, &option_fields, &[0, 1000, 2, 60, 15])
                    .build(),
                Builder::new(version, JUNIPER_DOMAIN)
                    .data(256, synth::JUNIPER_V4, &v4)
                    .data(257, synth::JUNIPER_V6, &v6)
                    .build(),
            ];
            let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
            let got = decode_all(&mut decoder, source(7), &datagrams);
            let want = [
                expected(&v4, source(7).ip(), 1000),
                expected(&v6, source(7).ip(), 1000),
            ]
            .concat();
            assert_eq!(got, want, "{version:?}");
        }
    }

    /// Rates per sampler id (Cisco's FLOW_SAMPLER_ID) and rates carried in the record.
    #[test]
    fn sampler_ids_and_per_record_rates() {
        let with_sampler: Vec<Field> =
            [synth::SOFTFLOWD_V9_V4, &[Field { id: 48, len: 1 }]].concat();
        let with_rate: Vec<Field> = [synth::SOFTFLOWD_V9_V4, &[Field { id: 34, len: 4 }]].concat();
        let sampler_options = [
            Field { id: 48, len: 1 },
            Field { id: 49, len: 1 },
            Field { id: 50, len: 4 },
        ];
        let scope = [Field { id: 1, len: 4 }];
        let batch = flows(0, 1);
        let mut record = Vec::new();
        synth::put_record(&mut record, synth::SOFTFLOWD_V9_V4, &batch[0]);
        let mut sampled_record = record.clone();
        sampled_record.push(2);
        let mut rated_record = record;
        rated_record.extend_from_slice(&64u32.to_be_bytes());
        let datagrams = [
            Builder::new(V::V9, 1)
                .template(300, &with_sampler)
                .template(301, &with_rate)
                .options_template(302, &scope, &sampler_options)
                .build(),
            Builder::new(V::V9, 1)
                .values(
                    302,
                    &[&scope[..], &sampler_options].concat(),
                    &[0, 1, 2, 10],
                )
                .values(
                    302,
                    &[&scope[..], &sampler_options].concat(),
                    &[0, 2, 2, 20],
                )
                .build(),
        ];
        let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
        assert!(decode_all(&mut decoder, source(3), &datagrams).is_empty());
        let mut data = Builder::new(V::V9, 1).build();
        for (id, body) in [(300u16, &sampled_record), (301, &rated_record)] {
            data.extend_from_slice(&id.to_be_bytes());
            data.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            data.extend_from_slice(body);
        }
        let got = decode_all(&mut decoder, source(3), &[data]);
        let packets: Vec<u64> = got.iter().map(|r| r.packets).collect();
        // Sampler 2 announced 1 in 20; the second record says 1 in 64 itself.
        assert_eq!(packets, vec![batch[0].packets * 20, batch[0].packets * 64]);
    }

    /// Templates are per exporter address and per domain: the same id means different
    /// things in each.
    #[test]
    fn templates_are_scoped_by_exporter_and_domain() {
        let v4 = flows(0, 3);
        let a = Builder::new(V::Ipfix, 1)
            .template(256, synth::SOFTFLOWD_IPFIX_V4)
            .build();
        let b = Builder::new(V::Ipfix, 2)
            .template(256, synth::JUNIPER_V4)
            .build();
        let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
        decode_all(&mut decoder, source(1), &[a.clone(), b]);
        let data_a = Builder::new(V::Ipfix, 1)
            .data(256, synth::SOFTFLOWD_IPFIX_V4, &v4)
            .build();
        let data_b = Builder::new(V::Ipfix, 2)
            .data(256, synth::JUNIPER_V4, &v4)
            .build();
        assert_eq!(
            decode_all(&mut decoder, source(1), std::slice::from_ref(&data_a)),
            expected(&v4, source(1).ip(), 1)
        );
        assert_eq!(
            decode_all(&mut decoder, source(1), &[data_b]),
            expected(&v4, source(1).ip(), 1)
        );
        // Another exporter has not sent template 256 of domain 1: nothing decodes.
        assert!(decode_all(&mut decoder, source(2), &[data_a]).is_empty());
    }

    /// Data before its template waits in the parser's pending cache and is counted when
    /// the template arrives.
    #[test]
    fn data_before_its_template_is_replayed_when_it_arrives() {
        let batch = flows(0, 5);
        let data = Builder::new(V::V9, 0)
            .data(256, synth::SOFTFLOWD_V9_V4, &batch)
            .build();
        let template = Builder::new(V::V9, 0)
            .template(256, synth::SOFTFLOWD_V9_V4)
            .build();
        let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
        let mut out = Vec::new();
        let decoded = decoder
            .decode(source(1), &data, &mut out)
            .expect("data first");
        assert_eq!((decoded.records, out.len()), (0, 0));
        decoder
            .decode(source(1), &template, &mut out)
            .expect("template");
        assert_eq!(out, expected(&batch, source(1).ip(), 1));
    }

    /// Data whose template never comes is held briefly, then counted as dropped.
    #[test]
    fn data_whose_template_never_comes_is_counted_when_dropped() {
        let settings = NetflowSettings {
            pending_ttl: Duration::from_millis(1),
            ..NetflowSettings::default()
        };
        let data = Builder::new(V::Ipfix, 3)
            .data(256, synth::SOFTFLOWD_IPFIX_V4, &flows(0, 4))
            .build();
        let mut decoder = NetflowDecoder::new(&settings);
        let mut out = Vec::new();
        decoder.decode(source(5), &data, &mut out).expect("first");
        assert!(decoder.expired_pending().is_empty());
        std::thread::sleep(Duration::from_millis(20));
        // The parser looks at its pending cache when the next set for it arrives.
        decoder.decode(source(5), &data, &mut out).expect("second");
        assert!(out.is_empty());
        assert_eq!(decoder.expired_pending(), vec![(source(5).ip(), 1)]);
        assert!(decoder.expired_pending().is_empty());
    }

    #[test]
    fn expired_templates_are_not_used() {
        let settings = NetflowSettings {
            template_ttl: Duration::from_millis(1),
            ..NetflowSettings::default()
        };
        let batch = flows(0, 2);
        let template = Builder::new(V::Ipfix, 0)
            .template(256, synth::SOFTFLOWD_IPFIX_V4)
            .build();
        let data = Builder::new(V::Ipfix, 0)
            .data(256, synth::SOFTFLOWD_IPFIX_V4, &batch)
            .build();
        let mut decoder = NetflowDecoder::new(&settings);
        decode_all(&mut decoder, source(1), &[template]);
        std::thread::sleep(Duration::from_millis(20));
        let mut out = Vec::new();
        assert!(
            decoder
                .direct(source(1), Version::Ipfix, &data, &mut out)
                .is_none()
        );
    }

    #[test]
    fn malformed_datagrams_are_refused_whole_without_panicking() {
        let batch = flows(0, 30);
        let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(source(1), &[0], &mut out),
            Err(NetflowError::Short(1))
        );
        assert_eq!(
            decoder.decode(source(1), &[0, 7, 0, 0], &mut out),
            Err(NetflowError::Version(7))
        );
        let datagrams = [
            synth::v5(&batch, 0, 0),
            Builder::new(V::V9, 0)
                .template(256, synth::SOFTFLOWD_V9_V4)
                .data(256, synth::SOFTFLOWD_V9_V4, &batch)
                .build(),
            Builder::new(V::Ipfix, 9)
                .template(256, synth::JUNIPER_V4)
                .options_template(
                    258,
                    synth::JUNIPER_SAMPLING_SCOPE_IPFIX,
                    synth::JUNIPER_SAMPLING_OPTIONS,
                )
                .data(256, synth::JUNIPER_V4, &batch)
                .build(),
        ];
        for datagram in &datagrams {
            for len in 0..datagram.len() {
                out.clear();
                let mut fresh = NetflowDecoder::new(&NetflowSettings::default());
                if let Err(error) = fresh.decode(source(1), &datagram[..len], &mut out) {
                    assert!(out.is_empty(), "{error}");
                    assert!(!error.reason().is_empty());
                }
            }
            // Every byte flipped, through one decoder that keeps its templates.
            for at in 0..datagram.len() {
                let mut broken = datagram.clone();
                broken[at] ^= 0xff;
                let _ = decoder.decode(source(1), &broken, &mut out);
            }
        }
    }
}
