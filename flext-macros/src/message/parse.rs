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
    pub aggregate_id: Option<AggregateId>,
    /// `http = "POST /accounts/{account_id}/deposits"`: the route, checked.
    pub http: Option<Route>,
}

/// A checked `http = ".."` option.
pub struct Route {
    pub method: String,
    pub path: String,
    /// Every field with its type, for the generated field parser.
    pub fields: Vec<(syn::Ident, syn::Type)>,
    /// Each field's key in the message's JSON, as serde's `rename` and `rename_all` make it.
    pub keys: Vec<String>,
    /// `created = "/accounts/{account}"`: answered 201 with this `Location`.
    pub created: Option<String>,
    /// `accepted`: answered 202, for work that goes on after the answer.
    pub accepted: bool,
    /// `idempotency_key`: the route needs an `Idempotency-Key` header.
    pub idempotency_key: bool,
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
        if let Some(span) = keyed {
            match def.http.as_mut() {
                Some(route) if kind == Kind::Command => route.idempotency_key = true,
                Some(_) => cx.push(error_at_span(
                    span,
                    "a query reads and is safe to repeat: `idempotency_key` is for a command",
                )),
                None if !cx.has_errors() => cx.push(error_at_span(
                    span,
                    format!(
                        "`idempotency_key` makes a route require the `Idempotency-Key` header: add `http = \"POST /...\"` to `#[{}]`",
                        kind.message_attr()
                    ),
                )),
                None => {}
            }
        }
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

/// `"METHOD /path/{field}"`: a method the kind may use, a path from the root, and each
/// `{name}` a field of the message, all reported on the string.
fn read_route(cx: &Ctxt, kind: Kind, item: &syn::DeriveInput, lit: &syn::LitStr) -> Option<Route> {
    let text = lit.value();
    let ident = &item.ident;
    let allowed: &[&str] = match kind {
        Kind::Query => &["GET"],
        _ => &["POST", "PUT", "PATCH", "DELETE"],
    };
    let Some((method, path)) = text.split_once(' ') else {
        cx.push(error_at(
            lit,
            format!(
                "write the route as a method and a path: `http = \"{} /...\"`",
                allowed[0]
            ),
        ));
        return None;
    };
    if !allowed.contains(&method) {
        cx.push(error_at(lit, format!("a {} is served on {}, not `{}`: a query reads and may be repeated, a command changes state", kind.message_attr(), allowed.join(", "), method)));
        return None;
    }
    if !path.starts_with('/') || path.contains(' ') {
        cx.push(error_at(
            lit,
            format!("the path starts at the root and has no spaces: `http = \"{method} /...\"`"),
        ));
        return None;
    }
    if !item.generics.params.is_empty() {
        cx.push(error_at(
            lit,
            "a generic message has no one type to serve: give the route to a concrete message",
        ));
        return None;
    }
    let syn::Data::Struct(syn::DataStruct {
        fields: syn::Fields::Named(named),
        ..
    }) = &item.data
    else {
        cx.push(error_at(lit, format!("an HTTP route binds its path and body to named fields: make `{ident}` a struct with named fields")));
        return None;
    };
    let fields: Vec<(syn::Ident, syn::Type)> = named
        .named
        .iter()
        .filter_map(|f| Some((f.ident.clone()?, f.ty.clone())))
        .collect();
    let names: Vec<String> = fields.iter().map(|(f, _)| f.to_string()).collect();
    let rename_all = serde_option(&item.attrs, "rename_all");
    let keys = named
        .named
        .iter()
        .filter(|f| f.ident.is_some())
        .zip(&names)
        .map(|(f, name)| {
            serde_option(&f.attrs, "rename").unwrap_or_else(|| {
                rename_all
                    .as_deref()
                    .map_or_else(|| name.clone(), |case| renamed(name, case))
            })
        })
        .collect();
    let ok = fields_of_template(cx, lit, path, &names, ident);
    ok.then(|| Route {
        method: method.to_owned(),
        path: path.to_owned(),
        fields,
        keys,
        created: None,
        accepted: false,
        idempotency_key: false,
    })
}

/// Whether every `{name}` segment of `template` is one of `names`; each that is not is
/// an error on `lit`.
fn fields_of_template(
    cx: &Ctxt,
    lit: &syn::LitStr,
    template: &str,
    names: &[String],
    ident: &syn::Ident,
) -> bool {
    let mut ok = true;
    for segment in template.split('/') {
        let Some(param) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            if segment.contains(['{', '}']) {
                cx.push(error_at(
                    lit,
                    format!("a path parameter is a whole segment, `/{{name}}`: `{segment}` is not"),
                ));
                ok = false;
            }
            continue;
        };
        if !names.iter().any(|n| n == param) {
            cx.push(error_at(
                lit,
                format!(
                    "`{{{param}}}` in the path names no field of `{ident}`: the fields are {}{}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::common::util::suggestion(param, names.iter().map(String::as_str))
                ),
            ));
            ok = false;
        }
    }
    ok
}

/// `created = "/accounts/{account}"` (201 with that `Location`) or `accepted` (202): on a
/// command with a route, one of them.
fn read_answer(
    cx: &Ctxt,
    kind: Kind,
    def: &mut MessageDef,
    created: Option<syn::LitStr>,
    accepted: Option<Span>,
) {
    let ident = def.item.ident.clone();
    let at: Option<(Span, &str)> = created
        .as_ref()
        .map(|l| (l.span(), CREATED))
        .or(accepted.map(|s| (s, ACCEPTED)));
    let Some((span, option)) = at else { return };
    let Some(route) = def.http.as_mut() else {
        if cx.has_errors() {
            return;
        }
        cx.push(error_at_span(
            span,
            format!(
                "`{option}` says how a route answers: add `http = \"POST /...\"` to `#[{}]`",
                kind.message_attr()
            ),
        ));
        return;
    };
    if kind != Kind::Command {
        cx.push(error_at_span(
            span,
            format!("a query reads: it answers 200, so `{option}` is for a command"),
        ));
        return;
    }
    if let (Some(lit), Some(_)) = (&created, accepted) {
        cx.push(error_at(
            lit,
            "a command answers either 201 (`created`) or 202 (`accepted`): keep one",
        ));
        return;
    }
    if let Some(lit) = created {
        let template = lit.value();
        if !template.starts_with('/') {
            cx.push(error_at(&lit, "`created` is the new resource's path, from the root: `created = \"/accounts/{account}\"`"));
            return;
        }
        let names: Vec<String> = route.fields.iter().map(|(f, _)| f.to_string()).collect();
        if fields_of_template(cx, &lit, &template, &names, &ident) {
            route.created = Some(template);
        }
    }
    route.accepted = accepted.is_some();
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

/// The string value of `#[serde(<key> = "..")]` among `attrs` (for `rename`, also
/// `rename(deserialize = "..")`), when there is one.
fn serde_option(attrs: &[syn::Attribute], key: &str) -> Option<String> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(key) {
                if meta.input.peek(syn::Token![=]) {
                    found = Some(meta.value()?.parse::<syn::LitStr>()?.value());
                } else {
                    meta.parse_nested_meta(|inner| {
                        let value = inner.value()?.parse::<syn::LitStr>()?.value();
                        if inner.path.is_ident("deserialize") {
                            found = Some(value);
                        }
                        Ok(())
                    })?;
                }
            } else if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            } else if meta.input.peek(syn::token::Paren) {
                meta.parse_nested_meta(|inner| {
                    if inner.input.peek(syn::Token![=]) {
                        inner.value()?.parse::<syn::Expr>()?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        });
    }
    found
}

/// A snake_case field name under serde's `rename_all = "<case>"`.
fn renamed(name: &str, case: &str) -> String {
    let words: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
    let capital = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    match case {
        "lowercase" => name.to_lowercase(),
        "UPPERCASE" => name.to_uppercase(),
        "PascalCase" => words.iter().map(|w| capital(w)).collect(),
        "camelCase" => words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { (*w).to_owned() } else { capital(w) })
            .collect(),
        "SCREAMING_SNAKE_CASE" => name.to_uppercase(),
        "kebab-case" => name.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => name.replace('_', "-").to_uppercase(),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{renamed, serde_option};

    #[test]
    fn fields_are_renamed_as_serde_renames_them() {
        assert_eq!(renamed("from_account", "camelCase"), "fromAccount");
        assert_eq!(renamed("from_account", "PascalCase"), "FromAccount");
        assert_eq!(renamed("from_account", "kebab-case"), "from-account");
        assert_eq!(
            renamed("from_account", "SCREAMING_SNAKE_CASE"),
            "FROM_ACCOUNT"
        );
        let field: syn::Field =
            syn::parse_quote!(#[serde(default, rename(serialize = "a", deserialize = "b"))] x: u8);
        assert_eq!(serde_option(&field.attrs, "rename").as_deref(), Some("b"));
        let field: syn::Field = syn::parse_quote!(#[serde(skip_serializing_if = "Option::is_none", rename = "c")] x: u8);
        assert_eq!(serde_option(&field.attrs, "rename").as_deref(), Some("c"));
    }
}
