//! `cdot-operator rules backtest FILE.yaml`: sends each AlertRule of a manifest file to a
//! running operator's backtest endpoint and prints what it would have done. A platform team
//! runs it on a pull request, before the rule is merged.
use std::fmt::Write as _;

use anyhow::{Context, bail};
use cdot_crds::{
    manifest,
    wire::alert::{BacktestReport, BacktestRequest},
};
use serde_json::Value;

use crate::cli::{OutputFormat, RulesCommand};

const DEFAULT_SINCE: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

pub async fn run(command: RulesCommand) -> anyhow::Result<()> {
    let RulesCommand::Backtest(args) = command;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let documents = manifest::split_documents(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let rules: Vec<Value> = documents
        .into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("AlertRule"))
        .collect();
    if rules.is_empty() {
        bail!("{} holds no AlertRule", args.file.display());
    }
    let token = match &args.token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(&args.token_file)
            .with_context(|| {
                format!(
                    "reading the API token from {} (or pass --token)",
                    args.token_file.display()
                )
            })?
            .trim()
            .to_owned(),
    };
    let from = match (&args.from, args.since) {
        (Some(from), _) => from.clone(),
        (None, since) => {
            let since = jiff::SignedDuration::try_from(since.unwrap_or(DEFAULT_SINCE))
                .context("--since is too long")?;
            jiff::Timestamp::now()
                .checked_sub(since)
                .context("--since reaches before 1970")?
                .to_string()
        }
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .context("building the HTTP client")?;
    let mut reports = Vec::new();
    let mut refused = 0;
    for (i, rule) in rules.into_iter().enumerate() {
        let name = rule
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let namespace = rule
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| args.namespace.clone())
            .with_context(|| {
                format!(
                    "AlertRule {name} (document {}) names no namespace: pass --namespace",
                    i + 1
                )
            })?;
        let url = format!(
            "{}/v1/namespaces/{namespace}/alertrules:backtest",
            args.api.trim_end_matches('/')
        );
        let request = BacktestRequest {
            rule,
            from: from.clone(),
            to: args.to.clone(),
        };
        let response = client
            .post(&url)
            .bearer_auth(&token)
            .json(&request)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let error: Value = serde_json::from_str(&body).unwrap_or_default();
            let message = error["message"].as_str().unwrap_or(&body);
            // Rules of data a backtest does not replay are passed over; refusals fail.
            if error["reason"] == "NotReplayable" {
                eprintln!("AlertRule {namespace}/{name}: not replayed: {message}");
                continue;
            }
            let field = error["field"]
                .as_str()
                .map(|f| format!(" (at {f})"))
                .unwrap_or_default();
            if status.is_client_error() && status != reqwest::StatusCode::UNAUTHORIZED {
                eprintln!("AlertRule {namespace}/{name}: {status}: {message}{field}");
                refused += 1;
                continue;
            }
            bail!("AlertRule {namespace}/{name}: {status}: {message}{field}");
        }
        let report: BacktestReport = serde_json::from_str(&body)
            .with_context(|| format!("{url} answered something that is not a backtest report"))?;
        if args.output == OutputFormat::Text {
            print!("{}", render(&report));
        }
        reports.push(report);
    }
    if args.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    if refused > 0 {
        bail!("{refused} AlertRule(s) of {} refused", args.file.display());
    }
    Ok(())
}

/// The text form of one report: a summary, then one line per episode.
pub fn render(r: &BacktestReport) -> String {
    let t = &r.totals;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "AlertRule {}/{}  {} .. {}",
        r.namespace, r.rule, r.from, r.to
    );
    let _ = writeln!(
        out,
        "  {} devices, {} series, {} series-minutes replayed",
        r.devices, r.series, r.minutes_replayed
    );
    let _ = writeln!(
        out,
        "  would have fired {} times on {} devices ({} more breaches recovered while pending), {} still open at the end",
        t.fired, t.devices_fired, t.pending_only, t.open_at_end
    );
    let _ = writeln!(
        out,
        "  {} notifications, {} minutes firing",
        t.notifications, t.firing_minutes
    );
    if !r.episodes.is_empty() {
        let _ = writeln!(
            out,
            "  {:<21} {:<21} {:<21} {:<24} {:<20} {:>10} {:>6}",
            "STARTED", "FIRED", "RESOLVED", "DEVICE", "SERIES", "PEAK", "NOTIF"
        );
        for e in &r.episodes {
            let series = e
                .series
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(
                out,
                "  {:<21} {:<21} {:<21} {:<24} {:<20} {:>10.2} {:>6}",
                e.started_at,
                e.fired_at.as_deref().unwrap_or("-"),
                e.resolved_at.as_deref().unwrap_or("open"),
                e.device,
                series,
                e.peak,
                e.notifications
            );
        }
        if r.truncated {
            let _ = writeln!(out, "  (more episodes than listed; the totals count all)");
        }
    }
    for c in &r.caveats {
        let _ = writeln!(out, "  note: {c}");
    }
    out
}
