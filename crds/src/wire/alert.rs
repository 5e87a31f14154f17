//! Alerts on the wire: what the alerts API answers, what a generic webhook receives
//! (a documented, versioned document), and the requests that acknowledge alerts and
//! create silences.
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alert_rule::Severity;

/// `version` of the generic webhook document; a breaking change gets a new one.
pub const NOTIFICATION_VERSION: &str = "rmm.cdot.io/alert-notification/v1";
/// HTTP header carrying [`AlertNotification::idempotency_key`] on every webhook, SMS and
/// ticket request, so a receiver can drop a redelivery.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Where an alert is in its lifecycle.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AlertState {
    /// The condition holds, for less than the rule's `for`.
    Pending,
    /// The condition held for the rule's `for`: notifications go out.
    Firing,
    /// Over: the value came back (past the resolve threshold, for the resolve `for`), the
    /// device or rule went away, or the rule changed.
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "firing" => Some(Self::Firing),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// Why a notification is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NotificationKind {
    /// The alert started firing.
    Firing,
    /// Still firing after the rule's `repeatInterval`.
    Repeat,
    /// The alert resolved.
    Resolved,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Repeat => "repeat",
            Self::Resolved => "resolved",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "firing" => Some(Self::Firing),
            "repeat" => Some(Self::Repeat),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// Who acknowledged an alert, when, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    /// The API token's name.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// One alert: a rule's condition on one device (and series group), from its first breach
/// to its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: Uuid,
    pub namespace: String,
    /// The AlertRule.
    pub rule: String,
    /// The Device.
    pub device: String,
    /// The Device's site, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Catalogue metric.
    pub metric: String,
    /// Labels of the series (or series group) the alert is about, e.g. `{mount: "/"}`.
    #[serde(default)]
    pub series: BTreeMap<String, String>,
    /// The rule's `labels`, with the device's labels named in `groupBy`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub severity: Severity,
    pub state: AlertState,
    /// The reduced value that last decided the state.
    pub value: f64,
    /// The worst reduced value seen while open.
    pub peak: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// Rendered `summary`.
    pub summary: String,
    /// Rendered `description`, when the rule has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// First breach (RFC 3339).
    pub started_at: String,
    /// When it started firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<String>,
    /// When it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
    /// Why notifications are held back right now (`silenced by <id>`, `maintenance`,
    /// `paused`, `inhibited by deviceOffline`), when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// Ticket opened for it (Ticket channels), per channel.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tickets: BTreeMap<String, String>,
}

/// One entry of an alert's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    /// RFC 3339.
    pub at: String,
    /// `pending`, `firing`, `resolved`, `acknowledged`, `unacknowledged`, `notified`,
    /// `notificationFailed`, `suppressed`.
    pub event: String,
    /// Value at the time, for state changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Who (token name) for acknowledgements; the channel for notifications.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `GET /v1/namespaces/{ns}/alerts/{id}`: an alert with its whole history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: Alert,
    pub history: Vec<AlertEvent>,
}

/// `GET /v1/alerts`, `GET /v1/namespaces/{ns}/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertList {
    pub items: Vec<Alert>,
}

/// `POST .../alerts/{id}:acknowledge`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcknowledgeRequest {
    /// Why (shown in the alert's history and the console).
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub comment: String,
}

/// One silence matcher: a label (`device`, `rule`, `metric`, `severity`, `site`, a series
/// label or a rule label) and a value, exact or a `*` glob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Matcher {
    #[schemars(length(min = 1, max = 317))]
    pub label: String,
    #[schemars(length(min = 1, max = 256))]
    pub value: String,
}

/// `POST /v1/namespaces/{ns}/silences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceRequest {
    /// All must match (an empty list is refused: it would silence the namespace).
    #[schemars(length(min = 1, max = 16))]
    pub matchers: Vec<Matcher>,
    /// RFC 3339; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// RFC 3339, after `startsAt`.
    pub ends_at: String,
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub comment: String,
}

/// A silence: notifications of matching alerts are held back between `startsAt` and
/// `endsAt`; the alerts are still recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: Uuid,
    pub namespace: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: String,
    pub ends_at: String,
    /// Token name; `manifests` for a Silence document.
    pub created_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The Silence document it comes from (git or the cluster); absent for silences made
    /// through the API. Such a silence ends when its document changes or goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET .../silences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SilenceList {
    pub items: Vec<Silence>,
}

/// What a generic webhook receives (`format: Generic`): one notification of one channel
/// about one or more alerts of a rule (those sharing the rule's `groupBy` labels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertNotification {
    /// [`NOTIFICATION_VERSION`].
    pub version: String,
    /// Same for every redelivery of this notification, different for every other one;
    /// also sent as the `Idempotency-Key` header.
    pub idempotency_key: String,
    pub kind: NotificationKind,
    pub namespace: String,
    /// The NotificationChannel.
    pub channel: String,
    /// The AlertRule.
    pub rule: String,
    pub severity: Severity,
    /// The values of the rule's `groupBy` labels these alerts share.
    #[serde(default)]
    pub group: BTreeMap<String, String>,
    /// One line for people (the first alert's summary, with a count when there are more).
    pub title: String,
    pub alerts: Vec<Alert>,
    /// RFC 3339: when this notification was made (not when it was delivered).
    pub created_at: String,
}

/// Most episodes a backtest report lists (the totals count all of them).
pub const MAX_BACKTEST_EPISODES: usize = 1000;
/// Longest range a backtest replays (the default retention of the 1-minute rollups).
pub const MAX_BACKTEST_DAYS: i64 = 90;

/// `POST /v1/namespaces/{ns}/alertrules:backtest`: replay an AlertRule, committed or not,
/// over the stored 1-minute rollups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BacktestRequest {
    /// The AlertRule document as committed to git (`apiVersion`, `kind`, `metadata`,
    /// `spec`); its namespace, when set, must be the path's.
    pub rule: serde_json::Value,
    /// Start of the range (RFC 3339).
    pub from: String,
    /// End of the range (RFC 3339); default now. At most 90 days after `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One alert the rule would have raised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacktestEpisode {
    /// The Device.
    pub device: String,
    /// Labels of the series.
    #[serde(default)]
    pub series: BTreeMap<String, String>,
    /// First breach (RFC 3339).
    pub started_at: String,
    /// When it would have fired; absent when it recovered while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<String>,
    /// When it would have resolved; absent when still open at the end of the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// The worst reduced value while open.
    pub peak: f64,
    /// Notifications it would have sent: firing, repeats and resolved, per channel that
    /// takes its severity.
    pub notifications: u32,
}

/// Counts over every episode of a backtest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacktestTotals {
    /// Alerts that would have fired.
    pub fired: u32,
    /// Breaches that recovered before `for` (pending only).
    pub pending_only: u32,
    /// Alerts still open at the end of the range.
    pub open_at_end: u32,
    /// Devices with at least one fired alert.
    pub devices_fired: u32,
    /// Notifications that would have been sent (an upper bound: `groupBy` bundles alerts
    /// of a group that fire together into one).
    pub notifications: u32,
    /// Minutes spent firing, summed over alerts.
    pub firing_minutes: u64,
}

/// The answer of a backtest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacktestReport {
    pub namespace: String,
    /// The AlertRule's name.
    pub rule: String,
    /// RFC 3339.
    pub from: String,
    /// RFC 3339.
    pub to: String,
    /// Devices the rule's selector picks today.
    pub devices: u32,
    /// Series of those devices the rule watches.
    pub series: u32,
    /// Series-minutes replayed; the rest of the range was ruled out by the hour tier.
    pub minutes_replayed: u64,
    pub totals: BacktestTotals,
    /// Episodes by start time, at most [`MAX_BACKTEST_EPISODES`].
    pub episodes: Vec<BacktestEpisode>,
    /// More episodes than listed.
    pub truncated: bool,
    /// What a replay cannot know and so leaves out.
    pub caveats: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            AlertState::Pending,
            AlertState::Firing,
            AlertState::Resolved,
        ] {
            assert_eq!(AlertState::from_name(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
        }
        for k in [
            NotificationKind::Firing,
            NotificationKind::Repeat,
            NotificationKind::Resolved,
        ] {
            assert_eq!(NotificationKind::from_name(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).expect("json"), k.as_str());
        }
    }
}
