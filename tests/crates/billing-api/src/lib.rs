//! Messages of a billing service, with no handlers: the handler lives in the `billing`
//! crate, as in a project that keeps its API types apart from its implementation.
#![forbid(unsafe_code)]

use flext::prelude::*;
use serde::{Deserialize, Serialize};

/// Bills `cents` to `customer`; the output is the invoice number.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssueInvoice {
    /// Who pays.
    pub customer: String,
    /// How much, in cents.
    pub cents: u64,
}
