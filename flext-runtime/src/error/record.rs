//! An error as a durable log keeps it: enough to rebuild an [`Error`] after a restart.
//! Shared by what sagas and workflows record.

use serde::{Deserialize, Serialize};

use super::{Error, ErrorKind};

/// An error as the log keeps it: enough to rebuild a [`Error`] after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error's code.
    pub code: String,
    /// The error's message.
    pub message: String,
}

impl From<&Error> for ErrorRecord {
    fn from(e: &Error) -> Self {
        ErrorRecord {
            kind: e.kind(),
            code: e.code().to_owned(),
            message: e.message().to_owned(),
        }
    }
}

impl From<&ErrorRecord> for Error {
    fn from(r: &ErrorRecord) -> Self {
        Error::new(r.kind, r.code.clone(), r.message.clone())
    }
}
