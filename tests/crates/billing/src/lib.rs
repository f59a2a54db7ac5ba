//! The handler of `billing_api::IssueInvoice`. Nothing in the test refers to an item of
//! this crate: it is linked only through `use billing as _;`.
#![forbid(unsafe_code)]

use billing_api::IssueInvoice;
use flext::prelude::*;

/// The command is another crate's type, so the compile-time "one handler" marker cannot
/// be implemented here (orphan rule): `external` leaves the check to bus construction.
#[command_handler(external)]
fn issue_invoice(cmd: IssueInvoice) -> Result<u64> {
    if cmd.cents == 0 {
        return Err(Error::validation("invoice.empty", "nothing to bill"));
    }
    Ok(1000 + cmd.cents % 1000)
}
