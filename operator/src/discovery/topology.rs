//! Paths through the LLDP topology: which Devices stand between a site's collector and a
//! Device, so that when one of them goes down the Devices behind it page once, through it,
//! instead of each on its own (alert inhibition derived from the topology, not wired by
//! hand as Zabbix dependencies are).
//!
//! The graph is undirected: an LLDP link seen from either end joins two Devices. Paths
//! start at the collector: the Devices that list it as an LLDP neighbour (by its name or a
//! management address), or the collector's own Device when it reports LLDP itself.
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::store::Link;

/// The Device graph of one namespace.
#[derive(Debug, Default)]
pub struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Links whose far end is a known Device become edges; the others are leaves nobody
    /// depends on.
    pub fn new(links: &[Link]) -> Self {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for link in links {
            if let Some(remote) = link.remote_device.as_ref().filter(|r| **r != link.device) {
                edges
                    .entry(link.device.clone())
                    .or_default()
                    .insert(remote.clone());
                edges
                    .entry(remote.clone())
                    .or_default()
                    .insert(link.device.clone());
            }
        }
        Self { edges }
    }

    /// Where paths from `collector` start: the Devices whose LLDP neighbours include it (by
    /// name, or one of `addresses`), and the collector itself when it is in the graph.
    pub fn roots(links: &[Link], collector: &str, addresses: &[String]) -> BTreeSet<String> {
        let mut roots: BTreeSet<String> = links
            .iter()
            .filter(|l| {
                l.remote_device.as_deref() == Some(collector)
                    || l.remote_name == collector
                    || l.remote_address
                        .is_some_and(|a| addresses.iter().any(|x| *x == a.to_string()))
            })
            .map(|l| l.device.clone())
            .collect();
        if links.iter().any(|l| l.device == collector) {
            roots.insert(collector.to_owned());
        }
        roots
    }

    /// The first of `down` (in order) that every path from `roots` to `target` runs through:
    /// with it removed, `target` cannot be reached. `None` when `target` is not in the graph,
    /// no root is, or some path avoids all of them.
    pub fn upstream<'a>(
        &self,
        roots: &BTreeSet<String>,
        target: &str,
        down: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        if !self.edges.contains_key(target) || !self.reaches(roots, target, None) {
            return None;
        }
        down.into_iter()
            .filter(|d| *d != target)
            .find(|d| !self.reaches(roots, target, Some(d)))
    }

    /// Whether `target` is reachable from a root without passing `without`.
    fn reaches(&self, roots: &BTreeSet<String>, target: &str, without: Option<&str>) -> bool {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<&str> = roots
            .iter()
            .map(String::as_str)
            .filter(|r| Some(*r) != without)
            .collect();
        while let Some(at) = queue.pop_front() {
            if at == target {
                return true;
            }
            if !seen.insert(at) {
                continue;
            }
            for next in self.edges.get(at).into_iter().flatten() {
                if Some(next.as_str()) != without && !seen.contains(next.as_str()) {
                    queue.push_back(next);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(device: &str, remote: Option<&str>, name: &str) -> Link {
        Link {
            device: device.into(),
            local_port: format!("{device}-p"),
            remote_chassis: format!("{name}-chassis"),
            remote_port: "p".into(),
            remote_device: remote.map(str::to_owned),
            remote_name: name.into(),
            remote_address: None,
        }
    }

    /// collector — rtr — sw — {srv, ap}; rtr — fw — srv (a second path to srv).
    fn site() -> Vec<Link> {
        vec![
            link("rtr", None, "col-1"),
            link("rtr", Some("sw"), "sw"),
            link("sw", Some("srv"), "srv"),
            link("sw", Some("ap"), "ap"),
            link("rtr", Some("fw"), "fw"),
            link("fw", Some("srv"), "srv"),
        ]
    }

    #[test]
    fn the_device_every_path_runs_through_is_upstream() {
        let links = site();
        let graph = Graph::new(&links);
        let roots = Graph::roots(&links, "col-1", &[]);
        assert_eq!(roots, ["rtr".to_owned()].into());
        // The router is down: everything behind it has it upstream.
        for target in ["sw", "srv", "ap", "fw"] {
            assert_eq!(
                graph.upstream(&roots, target, ["rtr"]),
                Some("rtr"),
                "{target}"
            );
        }
        // The switch is down: the access point is behind it, the server is not (via fw).
        assert_eq!(graph.upstream(&roots, "ap", ["sw"]), Some("sw"));
        assert_eq!(graph.upstream(&roots, "srv", ["sw"]), None);
        // A device down by itself has nothing upstream.
        assert_eq!(graph.upstream(&roots, "rtr", ["rtr"]), None);
        // Unknown targets and a graph without the collector decide nothing.
        assert_eq!(graph.upstream(&roots, "printer", ["rtr"]), None);
        assert_eq!(graph.upstream(&BTreeSet::new(), "ap", ["rtr"]), None);
    }

    #[test]
    fn the_collector_is_found_by_address_or_as_a_device() {
        let mut by_address = link("rtr", None, "");
        by_address.remote_address = Some("10.0.0.5".parse().expect("ip"));
        let links = vec![by_address, link("rtr", Some("sw"), "sw")];
        assert_eq!(
            Graph::roots(&links, "col-1", &["10.0.0.5".into()]),
            ["rtr".to_owned()].into()
        );
        let links = vec![link("col-1", Some("sw"), "sw")];
        assert_eq!(
            Graph::roots(&links, "col-1", &[]),
            ["col-1".to_owned()].into()
        );
    }
}
