//! Times as people read them: ages ("3 min ago") and short UTC stamps.
use jiff::Timestamp;

/// "12 s ago", "3 min ago", "5 h ago", "2 d ago"; the input as given when it is not
/// RFC 3339.
pub fn age(rfc3339: &str, now: Timestamp) -> String {
    let Ok(at) = rfc3339.parse::<Timestamp>() else {
        return rfc3339.to_owned();
    };
    let secs = (now.as_second() - at.as_second()).max(0);
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// `2026-12-06 19:52` (UTC) of Unix milliseconds.
pub fn stamp_ms(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// `2026-12-06 19:52` (UTC) of an RFC 3339 time; the input as given otherwise.
pub fn stamp(rfc3339: &str) -> String {
    rfc3339
        .parse::<Timestamp>()
        .map_or_else(|_| rfc3339.to_owned(), |t| stamp_ms(t.as_millisecond()))
}

/// Unix ms of `YYYY-MM-DD HH:MM` (UTC), as [`stamp_ms`] writes it; also RFC 3339.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t.as_millisecond());
    }
    let civil: jiff::civil::DateTime = jiff::fmt::strtime::parse("%Y-%m-%d %H:%M", text)
        .ok()?
        .to_datetime()
        .ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_stamps() {
        let now: Timestamp = "2026-12-06T20:00:00Z".parse().expect("ts");
        assert_eq!(age("2026-12-06T19:59:30Z", now), "30 s ago");
        assert_eq!(age("2026-12-06T19:57:00Z", now), "3 min ago");
        assert_eq!(age("2026-12-04T20:00:00Z", now), "2 d ago");
        assert_eq!(age("soon", now), "soon");
        assert_eq!(stamp("2026-12-06T19:52:10+00:00"), "2026-12-06 19:52");
        let ms = parse_utc("2026-12-06 19:52").expect("parse");
        assert_eq!(stamp_ms(ms), "2026-12-06 19:52");
        assert_eq!(parse_utc("2026-12-06T19:52:00Z"), Some(ms));
        assert_eq!(parse_utc("19:52"), None);
    }
}
