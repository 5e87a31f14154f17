//! The `Isolate` and `Release` steps: an nftables table of the agent's own
//! ([`NFT_TABLE`]) that drops all traffic except loopback and the allowed addresses.
//!
//! * The rules come from [`nft_ruleset`] in `cdot-crds`, so the operator's dry-run plan
//!   shows exactly what is applied here.
//! * The operator's address, as the agent reaches it, is always allowed: resolved from the
//!   operator URL when the step runs (and its name servers too when the URL names a host,
//!   since the agent resolves it again for each connection). An isolated device stays
//!   manageable, and can be released.
//! * The allow list is written to `isolation.json` in the state directory before the rules
//!   are applied, and applied again at every start ([`Isolation::reapply`]): nftables rules
//!   do not survive a reboot, an isolation must. Release deletes the table, then the file.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use cdot_crds::wire::{
    isolation::{IpNet, NFT_TABLE, nft_ruleset, parse_allow, release_script},
    work::{StepResult, StepState},
};
use serde::{Deserialize, Serialize};

use super::{command_output, failed, result, summary};
use crate::state;

/// File in the state directory holding the applied allow list.
pub const STATE_FILE: &str = "isolation.json";

/// What `isolation.json` holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    /// Every allowed address or CIDR, the operator's included.
    allow: Vec<String>,
}

/// Isolation of this device.
#[derive(Clone, Debug)]
pub struct Isolation {
    file: PathBuf,
    /// The operator's base URL.
    operator: String,
}

impl Isolation {
    pub fn new(state_dir: &Path, operator: &str) -> Self {
        Self {
            file: state_dir.join(STATE_FILE),
            operator: operator.to_owned(),
        }
    }

    /// Whether an isolation is recorded.
    pub fn recorded(&self) -> bool {
        self.file.exists()
    }

    /// Isolates the device: only `allow` and the operator stay reachable.
    pub async fn isolate(&self, allow: &[String]) -> StepResult {
        let mut nets = match parse_allow(allow) {
            Ok(nets) => nets,
            Err(e) => return failed(e.to_string()),
        };
        match self.operator_addresses().await {
            Ok(own) => nets.extend(own),
            Err(message) => {
                return failed(format!(
                    "{message}: not isolating, or the agent would cut itself off"
                ));
            }
        }
        let saved = Saved {
            allow: nets.iter().map(ToString::to_string).collect(),
        };
        if let Err(e) = state::write_json(&self.file, &saved, 0o600) {
            return failed(format!("cannot record the isolation: {e}"));
        }
        let applied = self.apply(&nets).await;
        if applied.state != StepState::Succeeded {
            // Not isolated now: a later start must not isolate the device behind the
            // operator's back.
            let _ = std::fs::remove_file(&self.file);
        }
        applied
    }

    /// Applies the recorded isolation again (at start-up), with the operator's current
    /// address; None when none is recorded.
    pub async fn reapply(&self) -> Option<StepResult> {
        if !self.recorded() {
            return None;
        }
        let saved: Saved = match state::read_json(&self.file) {
            Ok(saved) => saved,
            Err(e) => return Some(failed(format!("cannot read the recorded isolation: {e}"))),
        };
        let mut nets = match parse_allow(&saved.allow) {
            Ok(nets) => nets,
            Err(e) => return Some(failed(e.to_string())),
        };
        match self.operator_addresses().await {
            Ok(own) => nets.extend(own),
            // The recorded list holds the operator's address of the time: still isolate.
            Err(message) => {
                tracing::warn!(%message, "isolating with the recorded operator address only")
            }
        }
        Some(self.apply(&nets).await)
    }

    /// Releases the isolation: the table goes, then the record.
    pub async fn release(&self) -> StepResult {
        let script = release_script();
        if let Err(e) = nft(&script).await {
            return e;
        }
        match std::fs::remove_file(&self.file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return failed(format!(
                    "the rules are gone, but {}: {e}",
                    self.file.display()
                ));
            }
        }
        tracing::warn!(table = NFT_TABLE, "network isolation released");
        result(
            StepState::Succeeded,
            format!("deleted nftables table {NFT_TABLE}:\n{script}"),
        )
    }

    async fn apply(&self, nets: &[IpNet]) -> StepResult {
        let rules = nft_ruleset(nets);
        if let Err(e) = nft(&rules).await {
            return e;
        }
        let allowed: Vec<String> = nets.iter().map(ToString::to_string).collect();
        tracing::warn!(table = NFT_TABLE, allow = %allowed.join(", "), "network isolated");
        result(
            StepState::Succeeded,
            format!(
                "applied nftables table {NFT_TABLE} (allowing {}):\n{rules}",
                allowed.join(", ")
            ),
        )
    }

    /// The operator's addresses (and, when its URL names a host, the name servers').
    async fn operator_addresses(&self) -> Result<Vec<IpNet>, String> {
        let url = reqwest::Url::parse(&self.operator)
            .map_err(|e| format!("invalid operator URL {:?}: {e}", self.operator))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("operator URL {:?} has no host", self.operator))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![IpNet::from(ip)]);
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpNet> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve the operator host {host}: {e}"))?
            .map(|a| IpNet::from(a.ip()))
            .collect();
        if addrs.is_empty() {
            return Err(format!("the operator host {host} has no address"));
        }
        let resolvers = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Ok(addrs
            .into_iter()
            .chain(name_servers(&resolvers).into_iter().map(IpNet::from))
            .collect())
    }
}

/// The `nameserver` addresses of a resolv.conf, loopback ones left out (always allowed).
fn name_servers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect()
}

/// Runs `nft -f -` with `script`; the failure as a step result.
async fn nft(script: &str) -> Result<(), StepResult> {
    // A service's PATH may lack the sbin directories.
    let program = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nft");
    match command_output(program, &["-f", "-"], Some(script)).await {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(StepResult {
            exit_code: output.status.code(),
            ..failed(format!("nft refused the rules: {}", summary(&output)))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(failed(
            "nft (nftables) is not installed on this device: cannot isolate it",
        )),
        Err(e) => Err(failed(format!("cannot run nft: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_servers_skip_loopback_and_comments() {
        assert_eq!(
            name_servers(
                "# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\nnameserver fd00::1\n"
            ),
            vec![
                "10.0.0.2".parse::<IpAddr>().expect("ip"),
                "fd00::1".parse().expect("ip")
            ]
        );
    }
}
