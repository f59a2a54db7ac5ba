//! Message attribute input -> model, and its checks (a message has no cross-item rules,
//! so the checks live beside the parser).

use proc_macro2::{Span, TokenStream};

use crate::common::kind::Kind;
use crate::common::options::{self, Spec};
use crate::common::symbol::*;
use crate::common::{Ctxt, Krate, error_at, error_at_span};

pub struct MessageDef {
    pub kind: Kind,
    pub item: syn::DeriveInput,
    pub krate: Krate,
    /// The handler's output (commands and queries).
    pub output: Option<syn::Type>,
    pub name: String,
    pub idempotent: bool,
    /// `positional`: JSON input may give it as an array of its fields in order.
    pub positional: bool,
    pub timeout_ms: Option<u64>,
    pub validate: bool,
    pub version: Option<(u32, Span)>,
    /// The `#[aggregate_id]` field of a command decided by an aggregate.
    pub aggregate_id: Option<syn::Ident>,
}

const REQUEST_OPTIONS: &[&str] = &[
    OUTPUT, NAME, IDEMPOTENT, POSITIONAL, TIMEOUT_MS, VALIDATE, CRATE,
];
const EVENT_OPTIONS: &[&str] = &[NAME, VERSION, VALIDATE, CRATE];

impl MessageDef {
    pub fn from_syn(
        cx: &Ctxt,
        kind: Kind,
        args: TokenStream,
        item: syn::DeriveInput,
    ) -> MessageDef {
        let spec = Spec {
            attr: kind.message_attr(),
            allowed: if kind.is_request() {
                REQUEST_OPTIONS
            } else {
                EVENT_OPTIONS
            },
            repeatable: &[],
        };
        let mut def = MessageDef {
            kind,
            name: item.ident.to_string(),
            item,
            krate: Krate::new(None),
            output: None,
            idempotent: false,
            positional: false,
            timeout_ms: None,
            validate: false,
            version: None,
            aggregate_id: None,
        };
        let mut krate = None;
        let args_empty = args.is_empty();
        options::parse(cx, &spec, args, |key, meta| {
            match key {
                OUTPUT => def.output = Some(options::ty(meta)?),
                NAME => def.name = options::string(meta)?.value(),
                IDEMPOTENT => def.idempotent = options::flag(meta).map(|_| true)?,
                POSITIONAL => def.positional = options::flag(meta).map(|_| true)?,
                VALIDATE => def.validate = options::flag(meta).map(|_| true)?,
                TIMEOUT_MS => def.timeout_ms = Some(options::int(meta)?.0),
                VERSION => def.version = Some(options::int(meta)?),
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        def.krate = Krate::new(krate);
        def.aggregate_id = take_aggregate_id(cx, kind, &mut def.item);
        if kind.is_request() && def.output.is_none() && (args_empty || !cx.has_errors()) {
            let attr = kind.message_attr();
            cx.push(error_at_span(
                Span::call_site(),
                format!("`#[{attr}]` needs the handler's output type: `#[{attr}(output = T)]` (use `output = ()` when there is none)"),
            ));
        }
        def
    }
}

/// Removes `#[aggregate_id]` from the fields and returns the one field it marked.
fn take_aggregate_id(cx: &Ctxt, kind: Kind, item: &mut syn::DeriveInput) -> Option<syn::Ident> {
    let syn::Data::Struct(data) = &mut item.data else {
        return None;
    };
    let mut found: Option<syn::Ident> = None;
    for field in data.fields.iter_mut() {
        let marks = crate::common::util::take_attrs(&mut field.attrs, &[AGGREGATE_ID]);
        let Some((_, mark)) = marks.into_iter().next() else {
            continue;
        };
        if kind != Kind::Command {
            cx.push(error_at(
                &mark,
                "only a command names the aggregate that decides it: remove `#[aggregate_id]`",
            ));
        } else if let Some(first) = &found {
            cx.push(error_at(&mark, format!("a command names one aggregate, and `{first}` already does: remove this `#[aggregate_id]`")));
        } else if let Some(ident) = &field.ident {
            found = Some(ident.clone());
        } else {
            cx.push(error_at(&mark, "`#[aggregate_id]` goes on a named field"));
        }
    }
    found
}

pub fn check(def: &MessageDef, cx: &Ctxt) {
    if let Some((version, span)) = def.version
        && version == 0
    {
        cx.push(error_at_span(
            span,
            "`version` counts from 1: write `version = 1` for the first schema",
        ));
    }
    if let syn::Data::Union(u) = &def.item.data {
        cx.push(error_at(
            &u.union_token,
            "a message is a struct or an enum, not a union",
        ));
    }
}
