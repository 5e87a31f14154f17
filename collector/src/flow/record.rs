//! The normalised flow record every decoder produces, whatever the export protocol.
use std::net::IpAddr;

/// One flow record (or one sFlow packet sample) with the sampling rate already applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    /// The router or switch that exported it.
    pub exporter: IpAddr,
    /// Input ifIndex on the exporter (0 when unknown).
    pub in_if: u32,
    /// Output ifIndex on the exporter (0 when unknown).
    pub out_if: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (0 for protocols without ports).
    pub src_port: u16,
    /// Destination port (0 for protocols without ports).
    pub dst_port: u16,
    /// Layer-3 bytes, scaled by the sampling rate.
    pub bytes: u64,
    /// Packets, scaled by the sampling rate.
    pub packets: u64,
}
