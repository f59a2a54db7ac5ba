//! Message attribute input -> model, and its checks (a message has no cross-item rules,
//! so the checks live beside the parser).

use proc_macro2::{Span, TokenStream};

pub use super::route::Route;
use super::route::{read_answer, read_keyed, read_route};
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
    pub aggregate_id: Option<AggregateId>,
    /// `http = "POST /accounts/{account_id}/deposits"`: the route, checked.
    pub http: Option<Route>,
}

/// Where a command decided by an aggregate holds the aggregate's id.
pub enum AggregateId {
    /// A struct's `#[aggregate_id]` field.
    Field(syn::Ident),
    /// A command enum's variants, each with its `#[aggregate_id]` field (a cqrs-es
    /// user's `enum AccountCommand { Open { #[aggregate_id] id: String, .. }, .. }`).
    Variants(Vec<(syn::Ident, syn::Ident)>),
}

const REQUEST_OPTIONS: &[&str] = &[
    OUTPUT,
    NAME,
    IDEMPOTENT,
    POSITIONAL,
    TIMEOUT_MS,
    VALIDATE,
    HTTP,
    CREATED,
    ACCEPTED,
    IDEMPOTENCY_KEY,
    CRATE,
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
            http: None,
        };
        let mut http = None;
        let mut created = None;
        let mut accepted = None;
        let mut keyed = None;
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
                HTTP => http = Some(options::string(meta)?),
                CREATED => created = Some(options::string(meta)?),
                ACCEPTED => accepted = Some(options::flag(meta)?),
                IDEMPOTENCY_KEY => keyed = Some(options::flag(meta)?),
                _ => krate = Some(options::path(meta)?),
            }
            Ok(())
        });
        def.krate = Krate::new(krate);
        def.aggregate_id = take_aggregate_id(cx, kind, &mut def.item);
        if let Some(lit) = http {
            def.http = read_route(cx, kind, &def.item, &lit);
        }
        read_answer(cx, kind, &mut def, created, accepted);
        read_keyed(cx, kind, &mut def, keyed);
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

/// Removes `#[aggregate_id]` from the fields (of the struct, or of each variant of an
/// enum) and returns where it marked.
fn take_aggregate_id(cx: &Ctxt, kind: Kind, item: &mut syn::DeriveInput) -> Option<AggregateId> {
    match &mut item.data {
        syn::Data::Struct(data) => marked_field(cx, kind, &mut data.fields).map(AggregateId::Field),
        syn::Data::Enum(data) => {
            let marked: Vec<(syn::Ident, Option<syn::Ident>)> = data
                .variants
                .iter_mut()
                .map(|v| (v.ident.clone(), marked_field(cx, kind, &mut v.fields)))
                .collect();
            if marked.iter().all(|(_, f)| f.is_none()) {
                return None;
            }
            let mut variants = Vec::new();
            for (variant, field) in marked {
                match field {
                    Some(field) => variants.push((variant, field)),
                    None => cx.push(error_at(&variant, format!("every variant of a command enum decided by an aggregate names the aggregate: add an `#[aggregate_id]` field to `{variant}`, such as `{variant} {{ #[aggregate_id] account_id: String, .. }}`"))),
                }
            }
            Some(AggregateId::Variants(variants))
        }
        syn::Data::Union(_) => None,
    }
}

/// The one field of `fields` marked `#[aggregate_id]`, the mark removed.
fn marked_field(cx: &Ctxt, kind: Kind, fields: &mut syn::Fields) -> Option<syn::Ident> {
    let mut found: Option<syn::Ident> = None;
    for field in fields.iter_mut() {
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
            cx.push(error_at(&mark, "`#[aggregate_id]` goes on a named field: write the variant with braces, `Deposit { #[aggregate_id] account_id: String, .. }`"));
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
