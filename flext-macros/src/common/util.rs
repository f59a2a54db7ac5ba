//! Span and naming helpers: errors at the user's tokens, respanning generated tokens,
//! "did you mean", type names and type matching.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// An error covering every token of `tokens` (syn's `new_spanned`), not only the first.
pub fn error_at<T: ToTokens + ?Sized>(tokens: &T, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens, message)
}

/// An error with `message` at `span`.
pub fn error_at_span(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

/// `tokens` with the spans of its top-level tokens and group delimiters set to `span`,
/// leaving what is inside groups alone: for wrapping user expressions whose own errors
/// must keep pointing where they point.
pub fn respan_shallow(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), g.stream());
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `tokens` with every span set to `span`, recursively, so that a compiler error about
/// generated code lands on the user's token that `span` comes from.
pub fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// The closest of `candidates` to `name`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"` or nothing.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(name, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

/// The name a type is known by: its last path segment (`Order` for `crate::orders::Order`),
/// or its tokens.
pub fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_else(|| ty.to_token_stream().to_string()),
        _ => ty.to_token_stream().to_string(),
    }
}

/// Normalised tokens of a type, to match a parameter `&T` with an earlier output `T`.
pub fn type_key(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string().replace(' ', "")
}

/// Whether an output of type `output` satisfies a parameter `&wanted`: the same type,
/// or the target `String` and `Vec<T>` dereference to (`&str`, `&[T]`), so that steps can
/// take the borrowed forms clippy asks for.
pub fn produces(output: &syn::Type, wanted: &syn::Type) -> bool {
    let (out, want) = (type_key(output), type_key(wanted));
    if out == want {
        return true;
    }
    match wanted {
        syn::Type::Path(p) if p.path.is_ident("str") => {
            out == "String" || out.ends_with("::String")
        }
        syn::Type::Slice(slice) => {
            let inner = type_key(&slice.elem);
            out == format!("Vec<{inner}>") || out.ends_with(&format!("::Vec<{inner}>"))
        }
        _ => false,
    }
}

/// Whether `ty` is `()`.
pub fn is_unit(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Tuple(t) if t.elems.is_empty())
}

/// `T` of a return type written `Result<T>` or `Result<T, E>` (any path ending in
/// `Result`), when it is written that way.
pub fn result_ok_type(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// `&T` -> `T` (through groups and parentheses); `None` for anything else, `&mut T`
/// included.
pub fn referent(ty: &syn::Type) -> Option<&syn::Type> {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => Some(&r.elem),
        syn::Type::Group(g) => referent(&g.elem),
        syn::Type::Paren(p) => referent(&p.elem),
        _ => None,
    }
}

/// Removes the method attributes whose last path segment is in `names` and returns them
/// with the name they matched, in source order.
pub fn take_attrs(
    attrs: &mut Vec<syn::Attribute>,
    names: &[&'static str],
) -> Vec<(&'static str, syn::Attribute)> {
    let mut taken = Vec::new();
    attrs.retain(|attr| {
        let found = attr
            .path()
            .segments
            .last()
            .and_then(|s| names.iter().find(|n| s.ident == n));
        match found {
            Some(name) => {
                taken.push((*name, attr.clone()));
                false
            }
            None => true,
        }
    });
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn string_and_vec_outputs_serve_borrowed_parameters() {
        assert!(produces(&parse_quote!(String), &parse_quote!(str)));
        assert!(produces(
            &parse_quote!(std::string::String),
            &parse_quote!(str)
        ));
        assert!(produces(&parse_quote!(Vec<u8>), &parse_quote!([u8])));
        assert!(produces(&parse_quote!(Order), &parse_quote!(Order)));
        assert!(!produces(&parse_quote!(Vec<u16>), &parse_quote!([u8])));
        assert!(!produces(&parse_quote!(u32), &parse_quote!(u64)));
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        assert_eq!(
            did_you_mean("relase", ["release", "reserve"]),
            Some("release")
        );
        assert_eq!(did_you_mean("zzz", ["release", "reserve"]), None);
    }

    #[test]
    fn result_ok_type_reads_both_spellings() {
        let t: syn::Type = parse_quote!(flext::Result<u32>);
        assert_eq!(type_key(result_ok_type(&t).unwrap()), "u32");
        let t: syn::Type = parse_quote!(std::result::Result<Vec<u8>, MyError>);
        assert_eq!(type_key(result_ok_type(&t).unwrap()), "Vec<u8>");
        assert!(result_ok_type(&parse_quote!(Option<u8>)).is_none());
    }
}
