//! Where a run is, and the reports that tell the operator: cumulative counts, and the hosts
//! found since the previous report.
//!
//! A report carries at most [`MAX_HOSTS_PER_REPORT`] hosts and about [`REPORT_HOST_BYTES`]
//! of them in JSON, so that it fits a batch whatever the hosts hold; more hosts make
//! several reports in a row. A host too large by itself (thousands of long interface
//! names) has its longest tables halved until it fits [`HOST_MAX_BYTES`]: a host that
//! could never be shipped would hold up the run's final report.
use cdot_crds::wire::discovery::{
    FoundHost, MAX_HOSTS_PER_REPORT, ScanCounts, ScanReport, ScanState,
};
use uuid::Uuid;

/// JSON bytes of hosts one report aims at (a batch holds about 3 MiB).
const REPORT_HOST_BYTES: usize = 1 << 20;
/// Most JSON bytes of one host.
const HOST_MAX_BYTES: usize = 1 << 20;

/// What probing one address gave.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// This address's part of the run's counts.
    pub counts: ScanCounts,
    /// The address, when it answered.
    pub host: Option<FoundHost>,
}

/// A run's progress since it started, and the hosts not reported yet.
#[derive(Debug)]
pub(super) struct Progress {
    run: Uuid,
    scan: String,
    started_ms: i64,
    total: u64,
    scanned: u64,
    counts: ScanCounts,
    /// Found since the previous report, each with its JSON size.
    hosts: Vec<(FoundHost, usize)>,
    /// `scanned` at the previous report.
    reported: Option<u64>,
}

impl Progress {
    pub(super) fn new(run: Uuid, scan: String, started_ms: i64, total: u64) -> Self {
        Self {
            run,
            scan,
            started_ms,
            total,
            scanned: 0,
            counts: ScanCounts::default(),
            hosts: Vec::new(),
            reported: None,
        }
    }

    /// Adds one address done.
    pub(super) fn record(&mut self, outcome: Outcome) {
        self.scanned += 1;
        add(&mut self.counts, outcome.counts);
        if let Some(mut host) = outcome.host {
            let size = fit(&mut host);
            self.hosts.push((host, size));
        }
    }

    pub(super) fn scanned(&self) -> u64 {
        self.scanned
    }

    pub(super) fn counts(&self) -> &ScanCounts {
        &self.counts
    }

    /// Whether a progress report would say anything new.
    pub(super) fn has_news(&self) -> bool {
        self.reported != Some(self.scanned) || !self.hosts.is_empty()
    }

    /// Progress reports (`Running`) with the hosts found since the previous ones.
    pub(super) fn running(&mut self, t: i64) -> Vec<ScanReport> {
        self.reports(t, ScanState::Running, None)
    }

    /// The last reports of the run: the hosts not reported yet, the last report
    /// `Succeeded`, or `Failed` with `error`.
    pub(super) fn finish(&mut self, t: i64, error: Option<String>) -> Vec<ScanReport> {
        let state = match error {
            None => ScanState::Succeeded,
            Some(_) => ScanState::Failed,
        };
        self.reports(t, state, error)
    }

    /// One report per chunk of hosts (at least one report); only the last has `state`.
    fn reports(&mut self, t: i64, state: ScanState, error: Option<String>) -> Vec<ScanReport> {
        self.reported = Some(self.scanned);
        let chunks = chunks(std::mem::take(&mut self.hosts));
        let last = chunks.len() - 1;
        let mut error = error;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, hosts)| ScanReport {
                run: self.run,
                scan: self.scan.clone(),
                started_ms: self.started_ms,
                t,
                state: if i == last { state } else { ScanState::Running },
                error: if i == last { error.take() } else { None },
                total: self.total,
                scanned: self.scanned,
                counts: self.counts.clone(),
                hosts,
            })
            .collect()
    }
}

/// Adds `more` to `counts`.
fn add(counts: &mut ScanCounts, more: ScanCounts) {
    counts.icmp_probed += more.icmp_probed;
    counts.icmp_answered += more.icmp_answered;
    counts.snmp_probed += more.snmp_probed;
    counts.snmp_answered += more.snmp_answered;
    for (reason, n) in more.errors {
        *counts.errors.entry(reason).or_default() += n;
    }
}

/// Hosts cut into report-sized chunks, in order; one empty chunk for no hosts.
fn chunks(hosts: Vec<(FoundHost, usize)>) -> Vec<Vec<FoundHost>> {
    let mut chunks = vec![Vec::new()];
    let mut bytes = 0;
    for (host, size) in hosts {
        let Some(current) = chunks.last_mut() else {
            break;
        };
        let full = current.len() >= MAX_HOSTS_PER_REPORT
            || (!current.is_empty() && bytes + size > REPORT_HOST_BYTES);
        if full {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(current) = chunks.last_mut() {
            current.push(host);
        }
    }
    chunks
}

/// Halves the longest table of `host` until its JSON fits [`HOST_MAX_BYTES`]; its size.
fn fit(host: &mut FoundHost) -> usize {
    loop {
        let size = serde_json::to_vec(host).map_or(0, |json| json.len());
        let Some(facts) = host.snmp.as_mut().filter(|_| size > HOST_MAX_BYTES) else {
            return size;
        };
        let longest = [
            facts.interfaces.len(),
            facts.neighbours.len(),
            facts.addresses.len(),
        ];
        match longest.iter().enumerate().max_by_key(|(_, len)| **len) {
            Some((0, len)) if *len > 0 => facts.interfaces.truncate(len / 2),
            Some((1, len)) if *len > 0 => facts.neighbours.truncate(len / 2),
            Some((2, len)) if *len > 0 => facts.addresses.truncate(len / 2),
            // Texts are cut already: a host this large without tables cannot happen.
            _ => return size,
        }
    }
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::discovery::{FoundInterface, SnmpFacts};

    use super::*;

    fn progress() -> Progress {
        Progress::new(Uuid::nil(), "lan".into(), 1_000, 65_534)
    }

    fn host(n: u32) -> FoundHost {
        FoundHost {
            address: std::net::Ipv4Addr::from(0x0a00_0000 + n).into(),
            rtt_ms: Some(0.5),
            snmp: None,
        }
    }

    fn outcome(answered: bool, errors: &[(&str, u64)]) -> Outcome {
        Outcome {
            counts: ScanCounts {
                icmp_probed: 1,
                icmp_answered: u64::from(answered),
                errors: errors.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
                ..Default::default()
            },
            host: answered.then(|| host(1)),
        }
    }

    #[test]
    fn counts_add_up_and_news_is_only_progress() {
        let mut p = progress();
        assert!(p.has_news(), "the first report is news");
        p.record(outcome(true, &[]));
        p.record(outcome(false, &[("timeout", 1)]));
        p.record(outcome(false, &[("timeout", 2), ("malformed", 1)]));
        let [report] = p.running(5_000).try_into().expect("one report");
        assert_eq!(report.state, ScanState::Running);
        assert_eq!((report.scanned, report.total), (3, 65_534));
        assert_eq!(
            (report.counts.icmp_probed, report.counts.icmp_answered),
            (3, 1)
        );
        assert_eq!(report.counts.errors["timeout"], 3);
        assert_eq!(report.counts.errors["malformed"], 1);
        assert_eq!(report.hosts.len(), 1);
        assert_eq!((report.started_ms, report.t), (1_000, 5_000));
        assert!(!p.has_news());
        p.record(outcome(false, &[]));
        assert!(p.has_news());
        let [report] = p.running(7_000).try_into().expect("one report");
        assert!(report.hosts.is_empty(), "hosts are reported once");
        assert_eq!(report.counts.icmp_probed, 4, "counts are since the start");
    }

    #[test]
    fn many_hosts_make_several_reports_and_one_final_one() {
        let mut p = progress();
        for n in 0..2_500 {
            p.record(Outcome {
                counts: ScanCounts::default(),
                host: Some(host(n)),
            });
        }
        let running = p.running(1);
        let sizes: Vec<usize> = running.iter().map(|r| r.hosts.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);
        assert!(running.iter().all(|r| r.state == ScanState::Running));
        for n in 0..1_500 {
            p.record(Outcome {
                counts: ScanCounts::default(),
                host: Some(host(n)),
            });
        }
        let last = p.finish(2, None);
        let states: Vec<_> = last.iter().map(|r| (r.state, r.hosts.len())).collect();
        assert_eq!(
            states,
            [(ScanState::Running, 1_000), (ScanState::Succeeded, 500)]
        );
        let [failed] = progress()
            .finish(3, Some("no socket".into()))
            .try_into()
            .expect("one report");
        assert_eq!(failed.state, ScanState::Failed);
        assert_eq!(failed.error.as_deref(), Some("no socket"));
        assert!(failed.hosts.is_empty());
    }

    #[test]
    fn reports_stay_within_their_byte_budget_and_huge_hosts_are_cut() {
        let interface = |i: u32| FoundInterface {
            if_index: i,
            name: "x".repeat(1_000),
            alias: "y".repeat(1_000),
            ..Default::default()
        };
        let big = |n: u32, interfaces: u32| FoundHost {
            snmp: Some(SnmpFacts {
                interfaces: (0..interfaces).map(interface).collect(),
                ..Default::default()
            }),
            ..host(n)
        };
        let mut p = progress();
        // 4,096 interfaces of 2 kB: 8 MB, cut to fit.
        p.record(Outcome {
            counts: ScanCounts::default(),
            host: Some(big(0, 4_096)),
        });
        for n in 1..=5 {
            p.record(Outcome {
                counts: ScanCounts::default(),
                host: Some(big(n, 200)),
            });
        }
        let reports = p.running(1);
        assert!(reports.len() >= 2, "{} reports", reports.len());
        for report in &reports {
            let json = serde_json::to_vec(report).expect("json");
            assert!(
                json.len() <= REPORT_HOST_BYTES + HOST_MAX_BYTES,
                "{}",
                json.len()
            );
        }
        let first = &reports[0].hosts[0];
        let kept = first.snmp.as_ref().map_or(0, |f| f.interfaces.len());
        assert!((256..4_096).contains(&kept), "{kept} interfaces kept");
        let hosts: usize = reports.iter().map(|r| r.hosts.len()).sum();
        assert_eq!(hosts, 6, "no host lost");
    }
}
