//! Types and format checks shared by every kind: conditions, Secret and ConfigMap
//! references, label selectors, durations, times of day, time zones, CIDRs and cron
//! schedules.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use ipnet::IpNet;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    excerpt::excerpt,
    validation::{Errors, check_label_key, check_label_value, is_dns1123_subdomain},
};

/// Schema pattern of a duration: one or more `<integer><unit>` with unit `ms`, `s`, `m`,
/// `h`, `d` or `w`, e.g. `30s`, `5m`, `1h30m`, `7d`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d|w))+$";
/// Schema pattern of a time of day `HH:MM` (24-hour clock).
pub const TIME_OF_DAY_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// Schema pattern of a cron schedule: five fields or an `@daily`-style macro.
pub const CRON_PATTERN: &str = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|\S+( +\S+){4})$";

/// Status of a condition, as in Kubernetes `metav1.Condition`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    #[default]
    Unknown,
}

/// One observation of an object's state (Kubernetes `metav1.Condition` shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in CamelCase: `Ready`, `Reconciling` or `Degraded` on every kind, and
    /// `Enrolled` on a Device.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason for the last transition.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with the given type, status, reason and message, stamped `now` (RFC 3339).
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
        now: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now.into(),
            observed_generation: None,
        }
    }
}

/// A key of a Secret in the same namespace. Secret values never appear in resources.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the referring resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SecretKeyRef {
    pub(crate) fn validate_into(&self, path: &str, errs: &mut Errors) {
        if !is_dns1123_subdomain(&self.name) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "Secret name {} is not a valid RFC 1123 subdomain",
                    excerpt(&self.name)
                ),
            );
        }
        if !is_data_key(&self.key) {
            errs.push(
                format!("{path}.key"),
                format!(
                    "Secret key {} must be alphanumerics, '-', '_' or '.'",
                    excerpt(&self.key)
                ),
            );
        }
    }
}

/// A whole Secret in the same namespace; the keys it must hold are documented by the
/// referring field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret (same namespace as the referring resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl SecretRef {
    pub(crate) fn validate_into(&self, path: &str, errs: &mut Errors) {
        if !is_dns1123_subdomain(&self.name) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "Secret name {} is not a valid RFC 1123 subdomain",
                    excerpt(&self.name)
                ),
            );
        }
    }
}

/// A key of a ConfigMap in the same namespace, e.g. a script's text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap (same namespace as the referring resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl ConfigMapKeyRef {
    pub(crate) fn validate_into(&self, path: &str, errs: &mut Errors) {
        if !is_dns1123_subdomain(&self.name) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "ConfigMap name {} is not a valid RFC 1123 subdomain",
                    excerpt(&self.name)
                ),
            );
        }
        if !is_data_key(&self.key) {
            errs.push(
                format!("{path}.key"),
                format!(
                    "ConfigMap key {} must be 1-253 alphanumerics, '-', '_' or '.'",
                    excerpt(&self.key)
                ),
            );
        }
    }
}

/// A key of a Secret's or a ConfigMap's data, as Kubernetes allows it.
pub(crate) fn is_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Day of the week.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    pub fn of(day: jiff::civil::Weekday) -> Self {
        use jiff::civil::Weekday as W;
        match day {
            W::Monday => Self::Mon,
            W::Tuesday => Self::Tue,
            W::Wednesday => Self::Wed,
            W::Thursday => Self::Thu,
            W::Friday => Self::Fri,
            W::Saturday => Self::Sat,
            W::Sunday => Self::Sun,
        }
    }
}

/// A recurring window of time: on `days`, from `start` for `duration`, in `timeZone`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeWindow {
    /// Days on which the window opens; empty means every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    /// Local time the window opens, `HH:MM` (24-hour clock).
    #[schemars(regex(pattern = TIME_OF_DAY_PATTERN))]
    pub start: String,
    /// How long the window stays open, e.g. `4h` (at most 7 days).
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: String,
    /// IANA time zone of `start`, e.g. `Europe/London`.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

pub(crate) fn default_time_zone() -> String {
    "UTC".to_owned()
}

impl TimeWindow {
    /// Whether the window is open at `at`. Each opening is the local `start` of a listed
    /// day in `timeZone` (a start inside a DST gap moves forward, as jiff's compatible
    /// disambiguation does) and lasts `duration` of real time, so a window across a DST
    /// change is neither an hour short nor long. An invalid window is never open.
    pub fn contains(&self, at: jiff::Timestamp) -> bool {
        self.opening_at(at).is_some()
    }

    /// The opening holding `at`: when it opened and when it closes. Its start identifies
    /// it, so work done "once per opening" keys on it (a local hour repeated by a DST
    /// change is still one opening).
    pub fn opening_at(&self, at: jiff::Timestamp) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
        let today = at.to_zoned(self.zone()?).date();
        // Windows last at most 7 days: an opening 8 days back cannot reach `at`.
        (0..=8).find_map(|back| {
            let day = today.checked_sub(jiff::Span::new().days(back)).ok()?;
            let (opens, closes) = self.opening_on(day)?;
            (opens <= at && at < closes).then_some((opens, closes))
        })
    }

    /// The first opening that starts after `at`, within the next 8 days.
    pub fn next_opening_after(&self, at: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let today = at.to_zoned(self.zone()?).date();
        (0..=8).find_map(|ahead| {
            let day = today.checked_add(jiff::Span::new().days(ahead)).ok()?;
            let (opens, _) = self.opening_on(day)?;
            (opens > at).then_some(opens)
        })
    }

    fn zone(&self) -> Option<jiff::tz::TimeZone> {
        jiff::tz::TimeZone::get(&self.time_zone).ok()
    }

    /// The opening that starts on local `day`, if the window opens that day.
    fn opening_on(&self, day: jiff::civil::Date) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
        let (h, m) = parse_time_of_day(&self.start).ok()?;
        let length = jiff::SignedDuration::try_from(parse_duration(&self.duration).ok()?).ok()?;
        if !self.days.is_empty() && !self.days.contains(&Weekday::of(day.weekday())) {
            return None;
        }
        let opens = day
            .at(h as i8, m as i8, 0, 0)
            .to_zoned(self.zone()?)
            .ok()?
            .timestamp();
        Some((opens, opens.checked_add(length).ok()?))
    }

    pub(crate) fn validate_into(&self, path: &str, errs: &mut Errors) {
        errs.check(format!("{path}.start"), parse_time_of_day(&self.start));
        if let Some(d) = errs.check(format!("{path}.duration"), parse_duration(&self.duration)) {
            if d.is_zero() {
                errs.push(
                    format!("{path}.duration"),
                    "duration must be greater than zero",
                );
            } else if d > Duration::from_secs(7 * 86_400) {
                errs.push(format!("{path}.duration"), "duration must be at most 7d");
            }
        }
        errs.check(format!("{path}.timeZone"), check_time_zone(&self.time_zone));
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in self.days.iter().enumerate() {
            if !seen.insert(*d) {
                errs.push(
                    format!("{path}.days[{i}]"),
                    format!("day {d:?} listed twice"),
                );
            }
        }
    }
}

/// Whether `labels` match `selector` with Kubernetes semantics: every `matchLabels` entry
/// and every `matchExpressions` requirement (`In`, `NotIn`, `Exists`, `DoesNotExist`) must
/// hold. An empty selector matches everything; an unknown operator matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let Some(exprs) = &selector.match_expressions else {
        return true;
    };
    exprs.iter().all(|req| {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// Checks a label selector's keys, values and operators; errors are placed under `path`.
pub(crate) fn validate_selector(selector: &LabelSelector, path: &str, errs: &mut Errors) {
    if let Some(ml) = &selector.match_labels {
        for (k, v) in ml {
            errs.check(format!("{path}.matchLabels.{k}"), check_label_key(k));
            errs.check(format!("{path}.matchLabels.{k}"), check_label_value(v));
        }
    }
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        errs.check(format!("{p}.key"), check_label_key(&req.key));
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(
                        format!("{p}.values"),
                        format!("operator {} needs at least one value", req.operator),
                    );
                }
                for (j, v) in values.iter().enumerate() {
                    errs.check(format!("{p}.values[{j}]"), check_label_value(v));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(
                        format!("{p}.values"),
                        format!("operator {} takes no values", req.operator),
                    );
                }
            }
            other => errs.push(
                format!("{p}.operator"),
                format!(
                    "unknown operator {}; expected In, NotIn, Exists or DoesNotExist",
                    excerpt(other)
                ),
            ),
        }
    }
}

/// Parses a duration such as `30s`, `5m`, `1h30m`, `7d`, `2w` or `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || {
        format!(
            "invalid duration {}: expected e.g. 30s, 5m, 1h30m, 7d (units ms, s, m, h, d, w)",
            excerpt(s)
        )
    };
    if s.is_empty() {
        return Err(err());
    }
    let bytes = s.as_bytes();
    let mut total: u128 = 0; // milliseconds
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err());
        }
        let n: u128 = s[start..i].parse().map_err(|_| err())?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor: u128 = match &s[ustart..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(err()),
        };
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    let ms = u64::try_from(total).map_err(|_| err())?;
    Ok(Duration::from_millis(ms))
}

/// Parses a time of day `HH:MM` into (hour, minute).
pub fn parse_time_of_day(s: &str) -> Result<(u8, u8), String> {
    let err = || {
        format!(
            "invalid time of day {}: expected HH:MM (00:00 to 23:59)",
            excerpt(s)
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(err)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(err());
    }
    let h: u8 = h.parse().map_err(|_| err())?;
    let m: u8 = m.parse().map_err(|_| err())?;
    if h > 23 || m > 59 {
        return Err(err());
    }
    Ok((h, m))
}

/// Checks an IANA time zone name (e.g. `Europe/London`, `UTC`) against the bundled tz database.
pub fn check_time_zone(name: &str) -> Result<(), String> {
    jiff::tz::TimeZone::get(name).map(|_| ()).map_err(|_| {
        format!(
            "unknown time zone {}: expected an IANA name such as Europe/London",
            excerpt(name)
        )
    })
}

/// Parses a CIDR (`10.0.0.0/24`, `2001:db8::/64`) or a single address (as a /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "invalid CIDR or address {}: expected e.g. 192.168.1.0/24",
            excerpt(s)
        )
    })
}

/// Checks a five-field cron schedule (minute hour day-of-month month day-of-week, with
/// `*`, lists, ranges, steps and month/day names) or a macro such as `@daily`.
pub fn check_cron(s: &str) -> Result<(), String> {
    let s = s.trim();
    if let Some(m) = s.strip_prefix('@') {
        return match m {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "hourly" => Ok(()),
            _ => Err(format!("unknown cron macro {}", excerpt(s))),
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "cron schedule {} must have 5 fields (minute hour day-of-month month day-of-week), found {}",
            excerpt(s),
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day-of-week", 0, 7, &DAYS, 0),
    ];
    for (field, (name, min, max, names, name_base)) in fields.iter().zip(specs) {
        let value = |v: &str| -> Result<u32, String> {
            if let Some(pos) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
                return Ok(pos as u32 + name_base);
            }
            let n: u32 = v
                .parse()
                .map_err(|_| format!("cron {name} field: {} is not a number", excerpt(v)))?;
            if n < min || n > max {
                return Err(format!("cron {name} field: {n} is outside {min}-{max}"));
            }
            Ok(n)
        };
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (part, None),
            };
            if let Some(st) = step {
                let st: u32 = st.parse().map_err(|_| {
                    format!("cron {name} field: step {} is not a number", excerpt(st))
                })?;
                if st == 0 {
                    return Err(format!("cron {name} field: step must be at least 1"));
                }
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("cron {name} field: range {a}-{b} is reversed"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
}

/// Schema pattern of a site name (a non-empty Kubernetes label value).
pub const SITE_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// When both `spec.site` and the `rmm.cdot.io/site` label are set they must agree.
pub fn check_site_label(
    site: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Option<crate::FieldError> {
    match (site, labels.get(crate::SITE_LABEL)) {
        (Some(site), Some(label)) if site != label => Some(crate::FieldError::new(
            "spec.site",
            format!(
                "spec.site {} disagrees with label {}={}; set both to the same site or drop one",
                excerpt(site),
                crate::SITE_LABEL,
                excerpt(label)
            ),
        )),
        _ => None,
    }
}

/// Checks a host address: an IP address or a DNS host name.
pub fn check_host(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let host_ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if host_ok {
        Ok(())
    } else {
        Err(format!(
            "{} is neither an IP address nor a DNS host name",
            excerpt(s)
        ))
    }
}

/// Checks a duration string at `path`, optionally requiring it to be non-zero.
pub(crate) fn check_duration_into(
    errs: &mut Errors,
    path: impl Into<String>,
    s: &str,
    non_zero: bool,
) -> Option<Duration> {
    let path = path.into();
    let d = errs.check(path.clone(), parse_duration(s))?;
    if non_zero && d.is_zero() {
        errs.push(path, "duration must be greater than zero");
        return None;
    }
    Some(d)
}

/// Checks that a list of names has no duplicates; `path` is the list's path.
pub(crate) fn check_unique<'a>(
    errs: &mut Errors,
    path: &str,
    what: &str,
    items: impl IntoIterator<Item = &'a str>,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if !seen.insert(item) {
            errs.push(
                format!("{path}[{i}]"),
                format!("duplicate {what} {}", excerpt(item)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn time_windows_follow_the_local_clock_across_dst_and_midnight() {
        let w = TimeWindow {
            days: vec![Weekday::Sun],
            start: "01:30".into(),
            duration: "2h".into(),
            time_zone: "Europe/London".into(),
        };
        // 2026-03-29 is a Sunday and the clocks go forward at 01:00 UTC: 01:30 local does
        // not exist and becomes 02:30 BST (01:30 UTC); two real hours later it closes.
        assert!(!w.contains(ts("2026-03-29T01:29:00Z")));
        assert!(w.contains(ts("2026-03-29T01:30:00Z")));
        assert!(w.contains(ts("2026-03-29T03:29:00Z")));
        assert!(!w.contains(ts("2026-03-29T03:30:00Z")));
        // A winter Sunday: 01:30 GMT = 01:30 UTC.
        assert!(w.contains(ts("2026-01-04T02:00:00Z")));
        // Not on Monday.
        assert!(!w.contains(ts("2026-01-05T02:00:00Z")));
        // Over midnight and into the next day, every day.
        let night = TimeWindow {
            days: vec![],
            start: "23:00".into(),
            duration: "3h".into(),
            time_zone: "UTC".into(),
        };
        assert!(night.contains(ts("2026-01-06T01:59:00Z")));
        assert!(!night.contains(ts("2026-01-06T02:00:00Z")));
        // Saturday's opening reaches into Sunday even though only Saturday is listed.
        let long = TimeWindow {
            days: vec![Weekday::Sat],
            start: "22:00".into(),
            duration: "1d".into(),
            time_zone: "UTC".into(),
        };
        assert!(long.contains(ts("2026-01-04T21:00:00Z")));
        assert!(!long.contains(ts("2026-01-04T22:00:00Z")));
    }

    /// On the night the clocks go back, 01:30 happens twice; the window opens once (at the
    /// first 01:30) and every instant inside it names that one opening, so work done once
    /// per opening runs once.
    #[test]
    fn a_window_across_the_clocks_going_back_is_one_opening() {
        let w = TimeWindow {
            days: vec![Weekday::Sun],
            start: "01:30".into(),
            duration: "2h".into(),
            time_zone: "Europe/London".into(),
        };
        // 2026-10-25: 01:30 BST is 00:30 UTC; 01:00 UTC is 01:00 GMT again.
        let first = ts("2026-10-25T00:30:00Z");
        let opening = (first, ts("2026-10-25T02:30:00Z"));
        for at in [
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:29:59Z",
        ] {
            assert_eq!(w.opening_at(ts(at)), Some(opening), "{at}");
        }
        assert_eq!(w.opening_at(ts("2026-10-25T02:30:00Z")), None);
        assert_eq!(
            w.next_opening_after(ts("2026-10-24T12:00:00Z")),
            Some(first)
        );
        assert_eq!(
            w.next_opening_after(first),
            Some(ts("2026-11-01T01:30:00Z")),
            "a week later, in GMT"
        );
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| (*v).to_owned()).collect())
            },
        }
    }

    #[test]
    fn empty_selector_matches_all() {
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        assert!(selector_matches(
            &LabelSelector::default(),
            &labels(&[("a", "b")])
        ));
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("role", "server")])),
            match_expressions: Some(vec![
                req("env", "In", &["prod", "staging"]),
                req("tier", "NotIn", &["db"]),
                req("rmm.cdot.io/site", "Exists", &[]),
                req("retired", "DoesNotExist", &[]),
            ]),
        };
        let ok = labels(&[
            ("role", "server"),
            ("env", "prod"),
            ("rmm.cdot.io/site", "hq"),
        ]);
        assert!(selector_matches(&sel, &ok));
        let mut l = ok.clone();
        l.insert("role".into(), "workstation".into());
        assert!(!selector_matches(&sel, &l));
        let mut l = ok.clone();
        l.insert("env".into(), "dev".into());
        assert!(!selector_matches(&sel, &l));
        let mut l = ok.clone();
        l.insert("tier".into(), "db".into());
        assert!(!selector_matches(&sel, &l));
        let mut l = ok.clone();
        l.remove("rmm.cdot.io/site");
        assert!(!selector_matches(&sel, &l));
        let mut l = ok;
        l.insert("retired".into(), "yes".into());
        assert!(!selector_matches(&sel, &l));
        let bad = LabelSelector {
            match_expressions: Some(vec![req("a", "Bogus", &[])]),
            ..Default::default()
        };
        assert!(!selector_matches(&bad, &labels(&[("a", "b")])));
    }

    #[test]
    fn selector_validation() {
        let mut errs = Errors::default();
        validate_selector(
            &LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![
                    req("a", "In", &[]),
                    req("b", "Exists", &["x"]),
                    req("c", "Near", &[]),
                ]),
            },
            "spec.selector",
            &mut errs,
        );
        let paths: Vec<_> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator"
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "5",
            "m5",
            "5x",
            "1.5h",
            "-1s",
            "99999999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let re = regex::Regex::new(DURATION_PATTERN).expect("pattern");
        assert!(re.is_match("1h30m") && re.is_match("250ms") && !re.is_match("1.5h"));
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("00:00"), Ok((0, 0)));
        assert_eq!(parse_time_of_day("23:59"), Ok((23, 59)));
        for bad in ["24:00", "12:60", "1:00", "12-00", ""] {
            assert!(parse_time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones() {
        assert!(check_time_zone("Europe/London").is_ok());
        assert!(check_time_zone("UTC").is_ok());
        assert!(check_time_zone("America/New_York").is_ok());
        assert!(check_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/24").map(|n| n.prefix_len()), Ok(24));
        assert_eq!(parse_cidr("10.0.0.1").map(|n| n.prefix_len()), Ok(32));
        assert!(parse_cidr("2001:db8::/64").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("host.example").is_err());
    }

    #[test]
    fn cron() {
        for ok in [
            "0 2 * * *",
            "*/15 * * * MON-FRI",
            "0 3 1,15 JAN-JUN 0",
            "@daily",
            "5 4 * * 7",
        ] {
            assert!(check_cron(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "*/0 * * * *",
            "@often",
            "5-1 * * * *",
        ] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }
}
