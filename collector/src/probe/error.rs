//! Errors of probing. Each names the device, the probe and its target.
use std::fmt;

/// The probe an error is about: `device/probe (target)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeId {
    pub device: String,
    pub probe: String,
    pub target: String,
}

impl fmt::Display for ProbeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "probe {}/{} ({})", self.device, self.probe, self.target)
    }
}

/// Why a probe round could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{probe}: cannot resolve the target: {source}")]
    Resolve {
        probe: ProbeId,
        #[source]
        source: std::io::Error,
    },
    #[error("{probe}: the target resolves to no address")]
    NoAddress { probe: ProbeId },
    #[error(
        "{probe}: cannot open an {family} ICMP socket (needs root, CAP_NET_RAW or net.ipv4.ping_group_range): {source}"
    )]
    Socket {
        probe: ProbeId,
        family: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ProbeError {
    /// Short label for metrics: never a device, target or address.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Resolve { .. } | Self::NoAddress { .. } => "resolve",
            Self::Socket { .. } => "socket",
        }
    }
}
