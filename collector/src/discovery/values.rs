//! SNMP values as a report carries them: texts cut to [`MAX_TEXT_LEN`], hardware addresses
//! as `aa:bb:cc:dd:ee:ff`, other binary ids as hex.
use cdot_crds::wire::discovery::MAX_TEXT_LEN;

use crate::snmp::{oids::dotted, session::SnmpValue};

/// An OCTET STRING as text (lossy UTF-8, trailing NULs cut), at most [`MAX_TEXT_LEN`]
/// bytes; empty for any other value or none.
pub(super) fn text(value: Option<&SnmpValue>) -> String {
    value
        .and_then(SnmpValue::as_text)
        .map(|text| cut(text.trim().to_owned()))
        .unwrap_or_default()
}

/// The bytes of an OCTET STRING.
pub(super) fn bytes(value: Option<&SnmpValue>) -> Option<&[u8]> {
    match value {
        Some(SnmpValue::OctetString(bytes)) => Some(bytes),
        _ => None,
    }
}

/// A number of any integer type.
pub(super) fn number(value: Option<&SnmpValue>) -> Option<u64> {
    value.and_then(SnmpValue::as_u64)
}

/// sysObjectID as `1.3.6.1...`, without a leading dot; empty for anything else.
pub(super) fn object_id(value: Option<&SnmpValue>) -> String {
    match value {
        Some(SnmpValue::ObjectIdentifier(arcs)) => dotted(arcs),
        _ => String::new(),
    }
}

/// `aa:bb:cc:dd:ee:ff` (any length); `None` for no bytes.
pub(super) fn mac(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(cut(parts.join(":")))
}

/// `0a1b2c...`, cut like a text.
pub(super) fn hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    cut(hex)
}

/// The bytes as text when they are printable ASCII (trailing NULs aside).
pub(super) fn printable(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    let printable = !bytes.is_empty() && bytes.iter().all(|&b| (0x20..0x7f).contains(&b));
    printable.then(|| cut(String::from_utf8_lossy(bytes).into_owned()))
}

/// `text` cut to at most [`MAX_TEXT_LEN`] bytes, on a character boundary.
pub(super) fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_LEN {
        let end = (0..=MAX_TEXT_LEN)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT_LEN);
        let cut = cut(long);
        assert!(cut.len() <= MAX_TEXT_LEN && cut.len() >= MAX_TEXT_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(
            text(Some(&SnmpValue::OctetString(b" rtr-1\0".to_vec()))),
            "rtr-1"
        );
        assert_eq!(text(Some(&SnmpValue::Integer(3))), "");
    }

    #[test]
    fn addresses_hex_and_printable_ids() {
        assert_eq!(
            mac(&[0x02, 0, 0xaa, 0xbb, 0xcc, 0x01]).as_deref(),
            Some("02:00:aa:bb:cc:01")
        );
        assert_eq!(mac(&[]), None);
        assert_eq!(hex(&[0x01, 0xab]), "01ab");
        assert_eq!(printable(b"Gi0/1\0").as_deref(), Some("Gi0/1"));
        assert_eq!(printable(&[0x02, 0x00, 0x41]), None);
        assert_eq!(printable(b""), None);
    }

    #[test]
    fn object_ids_are_dotted_without_a_leading_dot() {
        let oid = SnmpValue::ObjectIdentifier(vec![1, 3, 6, 1, 4, 1, 9, 1, 1208]);
        assert_eq!(object_id(Some(&oid)), "1.3.6.1.4.1.9.1.1208");
        assert_eq!(object_id(Some(&SnmpValue::NoSuchObject)), "");
    }
}
