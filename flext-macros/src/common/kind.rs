//! The three kinds of message, shared by the message attributes and the handler
//! attributes.

use proc_macro2::TokenStream;
use quote::quote;

use super::symbol::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Command,
    Query,
    Event,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Command, Kind::Query, Kind::Event];

    /// `command`, `query`, `event`: the message attribute.
    pub fn message_attr(self) -> &'static str {
        match self {
            Kind::Command => COMMAND,
            Kind::Query => QUERY,
            Kind::Event => EVENT,
        }
    }

    /// `command_handler`, ...: the handler attribute.
    pub fn handler_attr(self) -> &'static str {
        match self {
            Kind::Command => COMMAND_HANDLER,
            Kind::Query => QUERY_HANDLER,
            Kind::Event => EVENT_HANDLER,
        }
    }

    /// The kind whose handler attribute `attr` is, by its last path segment.
    pub fn from_handler_attr(attr: &syn::Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        Kind::ALL
            .into_iter()
            .find(|k| last.ident == k.handler_attr())
    }

    /// `Command`, `Query`, `Event`: the variant of `MessageKind` and the trait name.
    pub fn variant(self) -> TokenStream {
        match self {
            Kind::Command => quote!(Command),
            Kind::Query => quote!(Query),
            Kind::Event => quote!(Event),
        }
    }

    /// Whether the kind has exactly one handler and an output.
    pub fn is_request(self) -> bool {
        self != Kind::Event
    }
}
