//! Numbers with units, as people read them.

/// `812 bit/s`, `12.3 Mbit/s` (decimal prefixes, as link speeds are given).
pub fn bps(value: f64) -> String {
    scaled(value, "bit/s")
}

/// `1.2 GB` (decimal).
pub fn bytes(value: f64) -> String {
    scaled(value, "B")
}

/// `3.4 M` packets and other counts.
pub fn count(value: f64) -> String {
    scaled(value, "").trim_end().to_owned()
}

fn scaled(value: f64, unit: &str) -> String {
    let magnitude = value.abs();
    let (divisor, prefix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(d, _)| magnitude >= *d)
        .unwrap_or((1.0, ""));
    let v = value / divisor;
    if divisor == 1.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {prefix}{unit}")
    }
}

/// A percentage with one decimal, `—` when absent.
pub fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.1} %"))
}

/// Milliseconds with one decimal, `—` when absent.
pub fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.1} ms"))
}

/// A measured value of any unit (an alert's value and threshold): three significant
/// digits for small values, none after the point from 100 on (`5.24`, `0.0123`, `812`).
pub fn value(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
        0
    } else {
        // Digits after the point that keep three significant ones.
        (2 - magnitude.log10().floor() as i32).clamp(0, 6) as usize
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `1 alert`, `3 alerts`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// IANA protocol names of the usual numbers.
pub fn protocol(number: u8) -> String {
    match number {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        47 => "GRE".into(),
        50 => "ESP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => format!("proto {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(bps(812.0), "812 bit/s");
        assert_eq!(bps(12_345_678.0), "12.3 Mbit/s");
        assert_eq!(bps(-2_500.0), "-2.5 kbit/s");
        assert_eq!(bytes(1.2e9), "1.2 GB");
        assert_eq!(count(3_400_000.0), "3.4 M");
        assert_eq!(count(12.0), "12");
        assert_eq!(protocol(6), "TCP");
        assert_eq!(protocol(89), "proto 89");
        assert_eq!(value(5.241935729980469), "5.24");
        assert_eq!(value(0.012345), "0.0123");
        assert_eq!(value(812.4), "812");
        assert_eq!(value(90.0), "90");
        assert_eq!(value(0.0), "0");
        assert_eq!(value(-1.5), "-1.5");
        assert_eq!(plural(1, "alert", "alerts"), "1 alert");
        assert_eq!(plural(0, "alert", "alerts"), "0 alerts");
    }
}
