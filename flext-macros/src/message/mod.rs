//! `#[command]`, `#[query]` and `#[event]`: implement the message traits, register the
//! type for dispatch by name.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::common::{Errors, error_at, parse_item, suggestion, with_errors};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Query,
    Event,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Query => "query",
            Kind::Event => "event",
        }
    }

    fn options(self) -> &'static [&'static str] {
        match self {
            Kind::Command => &[
                "output",
                "name",
                "idempotent",
                "timeout_ms",
                "validate",
                "crate",
            ],
            Kind::Query => &[
                "output",
                "name",
                "idempotent",
                "timeout_ms",
                "validate",
                "crate",
            ],
            Kind::Event => &["name", "version", "validate", "crate"],
        }
    }
}

/// The options of one message attribute, parsed with `syn::meta` so that `output` can be
/// any type (`Vec<UserId>` is not an expression, so darling's `key = value` cannot hold it).
#[derive(Default)]
struct Args {
    output: Option<syn::Type>,
    name: Option<syn::LitStr>,
    idempotent: bool,
    timeout_ms: Option<syn::LitInt>,
    validate: bool,
    version: Option<syn::LitInt>,
    krate: Option<syn::Path>,
}

fn parse_args(kind: Kind, args: TokenStream, errors: &mut Errors) -> Args {
    let mut out = Args::default();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if !kind.options().contains(&key.as_str()) {
            return Err(meta.error(format!(
                "unknown option `{key}` of `#[{}]`; the options are {}{}",
                kind.attr(),
                kind.options()
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                suggestion(&key, kind.options().iter().copied())
            )));
        }
        match key.as_str() {
            "output" => out.output = Some(meta.value()?.parse()?),
            "name" => out.name = Some(meta.value()?.parse()?),
            "idempotent" => out.idempotent = true,
            "validate" => out.validate = true,
            "timeout_ms" => out.timeout_ms = Some(meta.value()?.parse()?),
            "version" => out.version = Some(meta.value()?.parse()?),
            _ => out.krate = Some(meta.value()?.parse()?),
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push(e);
    }
    if let Some(v) = &out.version {
        if v.base10_parse::<u32>().map_or(true, |v| v == 0) {
            errors.push(error_at(
                v,
                "`version` counts from 1: write `version = 1` for the first schema",
            ));
        }
    }
    out
}

pub fn message(kind: Kind, args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: syn::DeriveInput = match parse_item(
        &input,
        format!("`#[{}]` goes on a struct or an enum", kind.attr()),
    ) {
        Ok(item) => item,
        Err(tokens) => return tokens,
    };
    let args = parse_args(kind, args, &mut errors);
    if kind != Kind::Event && args.output.is_none() && errors.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            format!(
                "`#[{}]` needs the handler's output type: `#[{}(output = T)]` (use `output = ()` when there is none)",
                kind.attr(),
                kind.attr()
            ),
        ));
    }
    if let syn::Data::Union(u) = &item.data {
        errors.push(error_at(
            &u.union_token,
            "a message is a struct or an enum, not a union",
        ));
    }
    if let Err(e) = errors.finish() {
        return with_errors(input, e);
    }
    expand(kind, &item, &args, input)
}

fn expand(kind: Kind, item: &syn::DeriveInput, args: &Args, input: TokenStream) -> TokenStream {
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::flext));
    let ident = &item.ident;
    // A generic message is a message for the type arguments that make it one.
    let mut generics = item.generics.clone();
    if !generics.params.is_empty() {
        let wc = generics.make_where_clause();
        wc.predicates
            .push(syn::parse_quote!(Self: #krate::__private::MessageBounds));
        if let Some(output) = &args.output {
            wc.predicates
                .push(syn::parse_quote!(#output: #krate::__private::OutputBounds));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = args
        .name
        .as_ref()
        .map_or_else(|| ident.to_string(), syn::LitStr::value);
    let kind_variant = match kind {
        Kind::Command => quote!(Command),
        Kind::Query => quote!(Query),
        Kind::Event => quote!(Event),
    };
    let idempotent = args.idempotent;
    let timeout = match &args.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let validate = args.validate.then(|| {
        quote_spanned! {ident.span()=>
            fn validate(&self) -> #krate::Result<()> {
                <Self as #krate::Validate>::validate(self)
            }
        }
    });
    let message_impl = quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl #impl_generics #krate::Message for #ident #ty_generics #where_clause
    };
    let kind_impl = match kind {
        Kind::Command | Kind::Query => {
            let output = args
                .output
                .as_ref()
                .map_or_else(|| quote!(()), |t| quote!(#t));
            let span = args
                .output
                .as_ref()
                .map_or_else(Span::call_site, Spanned::span);
            let header = quote_spanned! {span=>
                #[automatically_derived]
                impl #impl_generics #krate::#kind_variant for #ident #ty_generics #where_clause
            };
            quote!(#header { type Output = #output; })
        }
        Kind::Event => {
            let version = args
                .version
                .as_ref()
                .map_or_else(|| quote!(1), |v| quote!(#v));
            quote! {
                #[automatically_derived]
                impl #impl_generics #krate::Event for #ident #ty_generics #where_clause {
                    const VERSION: u32 = #version;
                }
            }
        }
    };
    // A generic message has no single type to register for dispatch by name.
    let registration = item.generics.params.is_empty().then(|| {
        let json = match kind {
            Kind::Command => quote!(json_command),
            Kind::Query => quote!(json_query),
            Kind::Event => quote!(json_event),
        };
        quote! {
            #krate::__private::inventory::submit! {
                #krate::__private::MessageRegistration {
                    name: #name,
                    module: ::core::module_path!(),
                    entry: #krate::__private::JsonEntry::#kind_variant(#krate::__private::#json::<#ident>),
                }
            }
        }
    });
    quote! {
        #input
        const _: () = {
            #message_impl {
                const NAME: &'static str = #name;
                const KIND: #krate::MessageKind = #krate::MessageKind::#kind_variant;
                const IDEMPOTENT: bool = #idempotent;
                const TIMEOUT_MS: ::core::option::Option<u64> = #timeout;
                #validate
            }
            #kind_impl
            #registration
        };
    }
}
