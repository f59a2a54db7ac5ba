//! `#[aggregate]` on the impl: `#[apply]` methods (`&mut self`, `&Event`, no result),
//! `#[command_handler]` methods (`&self`, `&Command`, optionally `&Context`, returning
//! `Result<Events<Self>>`) and `#[business_rule]` methods (`&self`, `&Command`): parse,
//! check, expand.

mod check;
mod expand;
mod parse;

pub use check::check;
pub use expand::expand;
pub use parse::Behaviour;
