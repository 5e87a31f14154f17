//! The ingest edge: how an agent's or collector's report body is read off the wire. At
//! most [`MAX_BODY_BYTES`] are read, gzip is inflated with the same cap (no gzip bombs),
//! and JSON errors name the field path, line and column. Refusals are domain
//! [`Rejection`]s, counted by the caller's reason counter and mapped to HTTP by
//! [`ApiError::from`].
use std::io::Read;

use axum::{
    body::Body,
    http::{HeaderMap, header},
};
use cdot_crds::wire::MAX_BODY_BYTES;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::ingest::Rejection;

/// Reads the body (at most [`MAX_BODY_BYTES`] on the wire), decompresses and parses it;
/// `count` is told the reason of a refusal.
pub async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    count: impl Fn(&'static str),
) -> Result<T, ApiError> {
    let reject = |r: Rejection| {
        count(r.reason);
        ApiError::from(r)
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.to_string().contains("length limit exceeded"));
            if too_large {
                reject(Rejection::too_large(
                    "too_large",
                    "body",
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                ))
            } else {
                reject(Rejection::invalid(
                    "malformed",
                    "body",
                    format!("failed to read the body: {e}"),
                ))
            }
        })?;
    let json = decode_body(headers, &bytes).map_err(reject)?;
    parse_json(&json).map_err(reject)
}

/// The request body, decompressed when `Content-Encoding: gzip`, at most
/// [`MAX_BODY_BYTES`] after decompression.
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, Rejection> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let too_large = || {
        Rejection::too_large(
            "too_large",
            "body",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes (after decompression)"),
        )
    };
    match encoding.as_deref() {
        None | Some("identity") | Some("") => {
            if body.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            Ok(body.to_vec())
        }
        Some("gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_BODY_BYTES));
            flate2::read::GzDecoder::new(body)
                .take(MAX_BODY_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    Rejection::invalid(
                        "encoding",
                        "body",
                        format!("the body is not valid gzip: {e}"),
                    )
                })?;
            if out.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            Ok(out)
        }
        Some(other) => Err(Rejection::unsupported_encoding(
            "header.content-encoding",
            format!(
                "Content-Encoding {} is not supported; use gzip or none",
                cdot_crds::excerpt::excerpt(other)
            ),
        )),
    }
}

/// Parses a JSON body; errors name the field path and the line and column.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        Rejection::invalid(
            "malformed",
            field,
            format!("invalid JSON body: {}", e.inner()),
        )
    })?;
    deserializer
        .end()
        .map_err(|e| Rejection::invalid("malformed", "body", format!("invalid JSON body: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use cdot_crds::wire::MetricsBatch;

    use super::*;
    use crate::ingest::error::Problem;

    #[test]
    fn bodies_are_decompressed_with_a_cap() {
        let mut gzip = HeaderMap::new();
        gzip.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"{\"a\":1}").expect("write");
        let small = encoder.finish().expect("finish");
        assert_eq!(decode_body(&gzip, &small).expect("decoded"), b"{\"a\":1}");

        // A gzip bomb: tiny on the wire, over the cap once inflated.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(&vec![b' '; MAX_BODY_BYTES + 10])
            .expect("write");
        let bomb = encoder.finish().expect("finish");
        assert!(bomb.len() < 100_000);
        let r = decode_body(&gzip, &bomb).expect_err("refused");
        assert_eq!(r.problem, Problem::TooLarge);

        let r = decode_body(&gzip, b"not gzip").expect_err("refused");
        assert_eq!(r.problem, Problem::Invalid);
        let mut br = HeaderMap::new();
        br.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        let r = decode_body(&br, b"{}").expect_err("refused");
        assert_eq!(r.problem, Problem::UnsupportedEncoding);
    }

    #[test]
    fn malformed_json_names_the_field_and_position() {
        let r = parse_json::<MetricsBatch>(
            br#"{"batchId":"00000000-0000-0000-0000-000000000000","agentVersion":"1","samples":[{"t":1,"n":"cpu","v":"x"}]}"#,
        )
        .expect_err("refused");
        assert_eq!(r.field, "samples[0].v");
        assert!(r.message.contains("line 1 column"), "{}", r.message);
        let r = parse_json::<MetricsBatch>(b"{\n  \"batchId\": ").expect_err("refused");
        assert!(r.message.contains("line 2"), "{}", r.message);
        let r = parse_json::<MetricsBatch>(b"{} trailing").expect_err("refused");
        assert_eq!(r.reason, "malformed");
    }
}
