//! The one option parser every attribute uses: `key`, `key = value`, comma separated.
//! It reports an unknown option with the list of known ones and a "did you mean", and a
//! repeated option on the repeated token; after any error it skips to the next comma and
//! goes on, so that one attribute's mistakes are all reported in one compile.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;

use super::Ctxt;
use super::util::suggestion;

/// What an attribute accepts.
pub struct Spec<'a> {
    /// The attribute's name, for messages (`command`, `saga_step`).
    pub attr: &'a str,
    /// Every option it accepts.
    pub allowed: &'a [&'a str],
    /// The options that may be given more than once (`after = a, after = b`).
    pub repeatable: &'a [&'a str],
}

/// Parses `tokens` (what is inside the attribute's parentheses) against `spec`, calling
/// `each` with every known option once. Errors, `each`'s included, go to `cx` as one
/// error for the attribute, at its first mistake, naming every fix.
pub fn parse(
    outer: &Ctxt,
    spec: &Spec<'_>,
    tokens: TokenStream,
    each: impl FnMut(&str, &ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    let cx = Ctxt::new();
    parse_each(&cx, spec, tokens, each);
    outer.push_as_one(cx);
}

fn parse_each(
    cx: &Ctxt,
    spec: &Spec<'_>,
    tokens: TokenStream,
    mut each: impl FnMut(&str, &ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let path = &meta.path;
        let key = quote::quote!(#path).to_string().replace(' ', "");
        if !spec.allowed.contains(&key.as_str()) {
            cx.push(meta.error(unknown(spec, &key)));
        } else if seen.contains(&key) && !spec.repeatable.contains(&key.as_str()) {
            cx.push(meta.error(format!(
                "`{key}` is given twice in `#[{}]`: keep one (the compiler would otherwise have to pick)",
                spec.attr
            )));
        } else {
            seen.push(key.clone());
            if let Err(e) = each(&key, &meta) {
                cx.push(e);
            }
        }
        skip_value(&meta)
    });
    if let Err(e) = parser.parse2(tokens) {
        cx.push(e);
    }
}

/// Parses the arguments of a method attribute: `#[step]`, `#[step(...)]`; `#[step = x]`
/// is an error.
pub fn parse_attr(
    cx: &Ctxt,
    spec: &Spec<'_>,
    attr: &syn::Attribute,
    each: impl FnMut(&str, &ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    match &attr.meta {
        syn::Meta::Path(_) => {}
        syn::Meta::List(list) => parse(cx, spec, list.tokens.clone(), each),
        syn::Meta::NameValue(nv) => cx.push(syn::Error::new_spanned(
            nv,
            format!(
                "write `#[{}(...)]` with the options in parentheses",
                spec.attr
            ),
        )),
    }
}

fn unknown(spec: &Spec<'_>, key: &str) -> String {
    if spec.allowed.is_empty() {
        return format!("`#[{}]` takes no options: remove `{key}`", spec.attr);
    }
    let list = spec
        .allowed
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "unknown option `{key}` of `#[{}]`; the options are {list}{}",
        spec.attr,
        suggestion(key, spec.allowed.iter().copied())
    )
}

/// Consumes whatever is left of the current option, up to the next top-level comma.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// `key = "text"`.
pub fn string(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::LitStr> {
    meta.value()?.parse()
}

/// `key = ident`.
pub fn ident(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Ident> {
    meta.value()?.parse()
}

/// `key = path`.
pub fn path(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    meta.value()?.call(syn::Path::parse_mod_style)
}

/// `key = Type`.
pub fn ty(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Type> {
    meta.value()?.parse()
}

/// `key = N`, as `T`, with the literal's span.
pub fn int<T>(meta: &ParseNestedMeta<'_>) -> syn::Result<(T, Span)>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let lit: syn::LitInt = meta.value()?.parse()?;
    Ok((lit.base10_parse()?, lit.span()))
}

/// `key = [a, b, c]` (or `key = a` for one): a list of identifiers.
pub fn ident_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<syn::Ident>> {
    let value = meta.value()?;
    if value.peek(syn::token::Bracket) {
        let content;
        syn::bracketed!(content in value);
        let list =
            syn::punctuated::Punctuated::<syn::Ident, syn::Token![,]>::parse_terminated(&content)?;
        Ok(list.into_iter().collect())
    } else {
        Ok(vec![value.parse()?])
    }
}

/// A flag: `key` alone.
pub fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<Span> {
    if meta.input.peek(syn::Token![=]) {
        return Err(meta.error("this option is a flag: write it alone, without `= value`"));
    }
    Ok(syn::spanned::Spanned::span(&meta.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    const SPEC: Spec<'static> = Spec {
        attr: "command",
        allowed: &["output", "name", "idempotent", "after"],
        repeatable: &["after"],
    };

    fn run(tokens: TokenStream) -> (Vec<String>, usize) {
        let cx = Ctxt::new();
        let mut keys = Vec::new();
        parse(&cx, &SPEC, tokens, |key, meta| {
            keys.push(key.to_owned());
            match key {
                "output" => ty(meta).map(drop),
                "name" => string(meta).map(drop),
                "after" => ident(meta).map(drop),
                _ => flag(meta).map(drop),
            }
        });
        let n = cx.count();
        let _ = cx.check();
        (keys, n)
    }

    #[test]
    fn a_repeated_option_is_an_error_and_the_first_is_kept() {
        let (keys, errors) = run(quote!(output = u32, output = String));
        assert_eq!(keys, ["output"]);
        assert_eq!(errors, 1);
    }

    #[test]
    fn a_repeatable_option_may_repeat() {
        let (keys, errors) = run(quote!(after = a, after = b));
        assert_eq!(keys, ["after", "after"]);
        assert_eq!(errors, 0);
    }

    #[test]
    fn every_unknown_option_is_reported_and_parsing_goes_on() {
        let (keys, errors) = run(quote!(outptu = u32, nmae = "x", idempotent, retries = 3));
        assert_eq!(keys, ["idempotent"]);
        // One attribute, one error: it names all three (see `Ctxt::push_as_one`).
        assert_eq!(errors, 1);
    }

    #[test]
    fn a_bad_value_is_reported_and_the_next_option_still_parsed() {
        let (keys, errors) = run(quote!(name = 3, idempotent));
        assert_eq!(keys, ["name", "idempotent"]);
        assert_eq!(errors, 1);
    }

    #[test]
    fn types_that_are_not_expressions_parse() {
        let (_, errors) = run(quote!(output = Vec<Option<u32>>, name = "n"));
        assert_eq!(errors, 0);
    }

    #[test]
    fn unknown_option_suggests_the_closest() {
        let message = unknown(&SPEC, "outptu");
        assert!(message.contains("did you mean `output`?"), "{message}");
    }
}
