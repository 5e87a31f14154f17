//! Request bodies: too large ones answered 413, and what a handler left unread drained.
//!
//! A server that answers before it read the whole body and then closes the connection makes
//! the kernel send a reset while the client is still writing; most clients (reqwest, curl)
//! then report "connection reset" and never read the answer. So a body declared larger than
//! any route accepts is refused from its `Content-Length` before any handler runs, and
//! whatever a handler did not read (a refusal after 4 MiB of a chunked body, a 401 before
//! reading) is read and dropped, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`], before the answer
//! goes out. A client that sent `Expect: 100-continue` and was answered before the handler
//! read anything sends no body at all, so nothing is drained for it.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    body::{Body, BodyDataStream},
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use tokio::sync::Mutex;

use super::ApiError;

/// Largest body any route accepts: an agent's metrics batch on the wire.
pub const MAX_REQUEST_BYTES: u64 = cdot_crds::wire::MAX_BODY_BYTES as u64;
/// Most bytes of an unread body dropped so that the client reads the answer; beyond, the
/// connection is closed (network transfer is the only cost: nothing is kept).
pub const DRAIN_BYTES: u64 = 256 * 1024 * 1024;
/// Longest time spent dropping an unread body.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The middleware; see the module documentation.
pub async fn guard(request: Request, next: Next) -> Response {
    let expects_continue = expects_continue(request.headers());
    if let Some(length) = content_length(request.headers())
        && length > MAX_REQUEST_BYTES
    {
        let response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!(
                "the request body of {length} bytes is larger than the {MAX_REQUEST_BYTES} bytes any route accepts"
            ),
        )
        .with_field("body")
        .into_response();
        if expects_continue {
            return close(response);
        }
        let mut stream = request.into_body().into_data_stream();
        return finish(response, drain(&mut stream).await);
    }
    let (parts, body) = request.into_parts();
    let shared = Arc::new(Mutex::new(body.into_data_stream()));
    let polled = Arc::new(AtomicBool::new(false));
    let handler_body = Body::from_stream(futures::stream::unfold(
        (shared.clone(), polled.clone()),
        |(stream, polled)| async move {
            polled.store(true, Ordering::Relaxed);
            let chunk = stream.lock().await.next().await;
            chunk.map(|chunk| (chunk, (stream, polled)))
        },
    ));
    let response = next.run(Request::from_parts(parts, handler_body)).await;
    if expects_continue && !polled.load(Ordering::Relaxed) {
        return response;
    }
    let drained = drain(&mut *shared.lock().await).await;
    finish(response, drained)
}

/// Reads and drops the rest of `stream`; whether it ended within the bounds.
async fn drain(stream: &mut BodyDataStream) -> bool {
    let read = async {
        let mut dropped: u64 = 0;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => dropped += bytes.len() as u64,
                Err(_) => return false,
            }
            if dropped > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

fn finish(response: Response, drained: bool) -> Response {
    if drained { response } else { close(response) }
}

/// Tells the client the connection ends with this answer (its body was not all read).
fn close(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}
