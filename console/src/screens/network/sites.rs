//! The worst interfaces and probe targets of each site (or of the selected one).
use cdot_crds::wire::network::SiteSummary;

use super::interfaces::oper_status;
use crate::widgets::units;

pub fn ui(ui: &mut egui::Ui, summary: &SiteSummary, only: Option<&str>) {
    let sites: Vec<_> = summary
        .sites
        .iter()
        .filter(|s| only.is_none() || s.site.as_deref() == only)
        .collect();
    if sites.is_empty() {
        ui.label("No interface or probe data in this window.");
        return;
    }
    ui.weak(format!(
        "{} – {} UTC",
        crate::widgets::time::stamp(&summary.from),
        crate::widgets::time::stamp(&summary.to)
    ));
    ui.horizontal_wrapped(|ui| {
        for site in sites {
            ui.group(|ui| {
                ui.set_min_width(280.0);
                ui.vertical(|ui| {
                    ui.strong(site.site.as_deref().unwrap_or("(no site)"));
                    for i in &site.interfaces {
                        let util = i
                            .inbound
                            .p95_utilization
                            .zip(i.outbound.p95_utilization)
                            .map_or_else(
                                || {
                                    format!(
                                        "p95 in {} out {}",
                                        units::bps(i.inbound.p95_bps),
                                        units::bps(i.outbound.p95_bps)
                                    )
                                },
                                |(a, b)| format!("p95 in {a:.1} % out {b:.1} %"),
                            );
                        ui.label(format!(
                            "{} {}: {}, {util}, {} errors",
                            i.device,
                            i.interface,
                            oper_status(i.oper_status),
                            i.errors.inbound + i.errors.outbound
                        ));
                    }
                    for p in &site.probes {
                        ui.label(format!(
                            "{} {} → {}: loss {}, rtt {}, jitter {}",
                            p.device,
                            p.probe,
                            p.target,
                            units::percent(p.loss_percent),
                            units::ms(p.rtt_avg_ms),
                            units::ms(p.jitter_ms)
                        ));
                    }
                });
            });
        }
    });
}
