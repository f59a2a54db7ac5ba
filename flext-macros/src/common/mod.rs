//! Pieces every macro family shares: attribute argument parsing, method signatures,
//! "did you mean" suggestions and the error accumulator.

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// All errors of one macro invocation, reported together (serde_derive's `Ctxt`, darling's
/// accumulator). Keeps `syn::Error`s so that an error can cover several tokens.
#[derive(Default)]
pub struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    /// Adds one error (or several, for a darling error that carries many).
    pub fn push(&mut self, error: impl Into<syn::Error>) {
        self.errors.push(error.into());
    }

    /// The value, or `None` after recording the error.
    pub fn handle<T>(&mut self, result: darling::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Err` with every error combined, if any was recorded.
    pub fn finish(self) -> syn::Result<()> {
        let mut errors = self.errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
        }
    }
}

/// An error covering every token of `tokens` (syn's `new_spanned`), not only the first.
pub fn error_at<T: ToTokens + ?Sized>(tokens: &T, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new_spanned(tokens, message)
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

/// An error with `message` at `span`.
pub fn error_at_span(span: Span, message: impl std::fmt::Display) -> syn::Error {
    syn::Error::new(span, message)
}

/// Parses the arguments of a method-level attribute (`#[step]`, `#[business_rule(...)]`)
/// with darling: a bare path means "all defaults".
pub fn parse_attr_args<T: FromMeta + Default>(attr: &syn::Attribute) -> darling::Result<T> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(T::default()),
        syn::Meta::List(list) => {
            let metas = NestedMeta::parse_meta_list(list.tokens.clone())?;
            T::from_list(&metas)
        }
        syn::Meta::NameValue(nv) => Err(darling::Error::from(error_at(
            nv,
            format!(
                "write `#[{}(...)]` with the options in parentheses",
                attr.path().to_token_stream()
            ),
        ))),
    }
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

/// `" did you mean `x`?"` or nothing.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(name, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

/// One parameter of a method after `&self`.
#[derive(Clone)]
pub enum Param {
    /// `&Context` (or `&flext::Context`): filled with the call's context.
    Context,
    /// Any other parameter, with its declared type.
    Value(Box<syn::Type>),
}

/// The parts of a method signature the macros care about, with the user's spans.
pub struct Method {
    pub ident: syn::Ident,
    pub is_async: bool,
    pub params: Vec<Param>,
    pub output: syn::ReturnType,
}

impl Method {
    /// Reads `sig`; `role` (for example "`#[step]`") names the attribute in messages.
    /// Every problem with the signature is pushed to `errors`.
    pub fn from_sig(sig: &syn::Signature, role: &str, errors: &mut Errors) -> Method {
        match sig.inputs.first() {
            Some(syn::FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            Some(syn::FnArg::Receiver(r)) => errors.push(error_at(
                r,
                format!(
                    "a {role} method takes `&self`, not `{}`",
                    r.to_token_stream()
                ),
            )),
            _ => errors.push(error_at(
                &sig.ident,
                format!(
                    "a {role} method takes `&self` as its first parameter: `fn {}(&self, ...)`",
                    sig.ident
                ),
            )),
        }
        if let Some(param) = sig.generics.type_params().next() {
            errors.push(error_at(
                param,
                format!("a {role} method cannot have type parameters: the service calls it with types it must know; move `{}` to the `impl`", param.ident),
            ));
        }
        let params = sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                syn::FnArg::Receiver(_) => None,
                syn::FnArg::Typed(pt) if is_context(&pt.ty) => Some(Param::Context),
                syn::FnArg::Typed(pt) => Some(Param::Value(pt.ty.clone())),
            })
            .collect();
        Method {
            ident: sig.ident.clone(),
            is_async: sig.asyncness.is_some(),
            params,
            output: sig.output.clone(),
        }
    }

    /// The declared types of the non-context parameters.
    pub fn values(&self) -> impl Iterator<Item = &syn::Type> {
        self.params.iter().filter_map(|p| match p {
            Param::Value(ty) => Some(&**ty),
            Param::Context => None,
        })
    }

    /// The return type, when one is written.
    pub fn return_type(&self) -> Option<&syn::Type> {
        match &self.output {
            syn::ReturnType::Default => None,
            syn::ReturnType::Type(_, ty) => Some(ty),
        }
    }
}

/// Whether `ty` is `&Context`, `&flext::Context` or `&'a ::flext::Context`.
pub fn is_context(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            syn::Type::Path(p) if p.qself.is_none() => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Context" && s.arguments.is_none()),
            _ => false,
        },
        syn::Type::Group(g) => is_context(&g.elem),
        syn::Type::Paren(p) => is_context(&p.elem),
        _ => false,
    }
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

/// Whether `ty` is `()`.
pub fn is_unit(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Tuple(t) if t.elems.is_empty())
}

/// Parses the item an attribute is on. When it is not the kind of item the attribute
/// goes on, returns the input unchanged plus an error at its first token that says where
/// the attribute goes (`where_it_goes`).
pub fn parse_item<T: syn::parse::Parse>(
    input: &TokenStream,
    where_it_goes: impl std::fmt::Display,
) -> std::result::Result<T, TokenStream> {
    syn::parse2(input.clone()).map_err(|_| {
        let first = input.clone().into_iter().next();
        with_errors(input.clone(), error_at(&first, where_it_goes))
    })
}

/// Emits `item` unchanged plus the errors, so that the rest of the crate still sees the
/// user's definitions (tokio-macros' `token_stream_with_error`).
pub fn with_errors(item: TokenStream, errors: syn::Error) -> TokenStream {
    let mut out = item;
    out.extend(errors.into_compile_error());
    out
}
