//! Talking to the operator: typed calls of the people API ([`routes`]), one HTTP client
//! ([`client`]), and the background fetcher with one state per panel ([`fetch`]).
//!
//! All HTTP runs on a tokio runtime of one worker thread owned by the [`fetch::Fetcher`]
//! (async reqwest, so a slow or dead operator holds no thread per request); the UI thread
//! only sends calls and picks up answers through channels, and the worker wakes the UI
//! with `request_repaint` when an answer arrives.
pub mod client;
pub mod fetch;
pub mod routes;

use std::{marker::PhantomData, time::Duration};

/// Why a call failed, worded for the people reading the panel that made it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Nothing answers: connection refused, DNS, TLS.
    #[error("cannot reach the operator at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the operator at {url} did not answer within {} s", .after.as_secs())]
    Timeout { url: String, after: Duration },
    /// The token is unknown or revoked.
    #[error("the operator at {url} refused the token (401 Unauthorized): {message}")]
    Unauthorized { url: String, message: String },
    /// Any other error status, with the API's own message (e.g. a 403 naming the role).
    #[error("{status} {reason}: {message}")]
    Status {
        url: String,
        status: u16,
        reason: String,
        message: String,
    },
    #[error("cannot read the answer of {url}: {detail}")]
    Decode { url: String, detail: String },
}

impl ApiError {
    /// The operator is down or does not take the token: the whole console is affected,
    /// not just one panel, so the connect screen takes over.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Unauthorized { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

/// One HTTP call whose answer deserialises into `T` (`()` for 204 answers).
#[derive(Debug)]
pub struct Call<T> {
    pub method: Method,
    /// Absolute URL with its query.
    pub url: String,
    /// JSON body, already serialised from a wire type.
    pub body: Option<Vec<u8>>,
    answer: PhantomData<fn() -> T>,
}

impl<T> Call<T> {
    pub fn get(url: String) -> Self {
        Self {
            method: Method::Get,
            url,
            body: None,
            answer: PhantomData,
        }
    }

    pub fn delete(url: String) -> Self {
        Self {
            method: Method::Delete,
            url,
            body: None,
            answer: PhantomData,
        }
    }

    pub fn post(url: String, body: &impl serde::Serialize) -> Self {
        Self {
            method: Method::Post,
            url,
            // Wire types always serialise; a failure here would be a bug in cdot-crds.
            body: Some(serde_json::to_vec(body).unwrap_or_default()),
            answer: PhantomData,
        }
    }
}
