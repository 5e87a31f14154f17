//! Why a report was refused, in the domain's terms: what is wrong, where (the field path
//! of the report, e.g. `samples[3].t`), and a low-cardinality reason for the rejection
//! counters. The HTTP edge maps it to a status code (`api::error`).
use std::fmt;

/// What kind of problem a refused report has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A field is malformed or out of its range.
    Invalid,
    /// The report, or one of its lists, is larger than accepted.
    TooLarge,
    /// The body is encoded in a way that is not accepted.
    UnsupportedEncoding,
}

/// A refused report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub problem: Problem,
    /// Path of the offending field (`body` for the whole report).
    pub field: String,
    pub message: String,
    /// Label of `cdot_ingest_rejected_total` / `cdot_network_rejected_total`.
    pub reason: &'static str,
}

impl Rejection {
    pub fn invalid(
        reason: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            problem: Problem::Invalid,
            field: field.into(),
            message: message.into(),
            reason,
        }
    }

    pub fn too_large(
        reason: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            problem: Problem::TooLarge,
            ..Self::invalid(reason, field, message)
        }
    }

    pub fn unsupported_encoding(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problem: Problem::UnsupportedEncoding,
            ..Self::invalid("encoding", field, message)
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Rejection {}
