//! What every macro family shares, in the manner of serde_derive's `internals`: the one
//! driver every attribute goes through ([`driver`]), the error context that cannot be
//! dropped unchecked ([`ctxt`]), the table of attribute and option names ([`symbol`]),
//! the option parser that rejects unknown and repeated options ([`options`]), the one
//! method-signature model ([`sig`]), the message [`kind`], the topological order and cycle reports ([`graph`]), the one validator of undos and compensations ([`undo`]), the crate path resolved once
//! ([`krate`]), the by-index dispatch sagas and workflows generate ([`dispatch`]), and
//! span helpers ([`util`]).

pub mod ctxt;
pub mod dispatch;
pub mod driver;
pub mod graph;
pub mod kind;
pub mod krate;
pub mod options;
pub mod sig;
pub mod symbol;
pub mod undo;
pub mod util;

pub use ctxt::Ctxt;
pub use krate::Krate;
pub use util::{error_at, error_at_span, respan, respan_shallow};
