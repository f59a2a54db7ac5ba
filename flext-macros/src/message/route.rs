//! The `http = "METHOD /path/{field}"` option and its companions (`created`, `accepted`,
//! `idempotency_key`): read, checked against the message's fields, reported on the
//! user's strings.

use proc_macro2::Span;

use super::parse::MessageDef;
use crate::common::kind::Kind;
use crate::common::symbol::*;
use crate::common::{Ctxt, error_at, error_at_span};

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

/// `"METHOD /path/{field}"`: a method the kind may use, a path from the root, and each
/// `{name}` a field of the message, all reported on the string.
pub fn read_route(
    cx: &Ctxt,
    kind: Kind,
    item: &syn::DeriveInput,
    lit: &syn::LitStr,
) -> Option<Route> {
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
pub fn read_answer(
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

/// `idempotency_key`: on a command with a route, the route requires the header.
pub fn read_keyed(cx: &Ctxt, kind: Kind, def: &mut MessageDef, keyed: Option<Span>) {
    let Some(span) = keyed else { return };
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
