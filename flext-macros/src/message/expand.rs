//! Model -> tokens: the `Message` impl and the registration for dispatch by name. The
//! kind traits (`Command`, `Query`, `Event`) follow from `Message::Kind` through the
//! runtime's blanket impls, so a type that is not serde gets one error, at this impl.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::{AggregateId, MessageDef};
use crate::common::kind::Kind;

/// The item and its impls; `complete` is false for the fallback, which leaves out the
/// registration (nothing will run) but keeps the traits callers use.
pub fn message(def: &MessageDef, complete: bool) -> TokenStream {
    let p = def.krate.private();
    let item = &routed(&def.item, def.http.is_some(), &p);
    let ident = &item.ident;
    // A generic message is a message for the type arguments that make it one.
    let mut generics = item.generics.clone();
    if !generics.params.is_empty() {
        let wc = generics.make_where_clause();
        wc.predicates.push(syn::parse_quote!(Self: #p::Wire + ::core::marker::Send + ::core::marker::Sync + 'static));
        if let Some(output) = &def.output {
            wc.predicates
                .push(syn::parse_quote!(#output: #p::OutputBounds));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = &def.name;
    let variant = def.kind.variant();
    let idempotent = def.idempotent;
    let positional = def.positional;
    let timeout = match &def.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    let version = def.version.map_or(1, |(v, _)| v);
    let validate = def.validate.then(|| {
        quote_spanned! {ident.span()=>
            fn validate(&self) -> #p::Result<()> {
                <Self as #p::Validate>::validate(self)
            }
        }
    });
    let reply = match &def.output {
        Some(t) => quote_spanned!(t.span()=> #t),
        None => quote!(()),
    };
    let header = quote_spanned! {ident.span()=>
        #[automatically_derived]
        impl #impl_generics #p::Message for #ident #ty_generics #where_clause
    };
    // A generic message has no single type to register for dispatch by name.
    let registration = (complete && item.generics.params.is_empty()).then(|| {
        let json = match def.kind {
            Kind::Command => quote!(json_command),
            Kind::Query => quote!(json_query),
            Kind::Event => quote!(json_event),
        };
        quote! {
            #p::inventory::submit! {
                #p::MessageRegistration {
                    name: #name,
                    module: ::core::module_path!(),
                    entry: #p::JsonEntry::#variant(#p::#json::<#ident>),
                }
            }
        }
    });
    let aggregate_id = def.aggregate_id.as_ref().map(|id| {
        let show = match id {
            AggregateId::Field(field) => quote_spanned! {field.span()=>
                ::std::string::ToString::to_string(&self.#field)
            },
            AggregateId::Variants(variants) => {
                let arms = variants.iter().map(|(variant, field)| {
                    let show = quote_spanned! {field.span()=>
                        ::std::string::ToString::to_string(#field)
                    };
                    quote!(Self::#variant { #field, .. } => #show,)
                });
                // The wildcard is for an enum with a variant the parser refused (an
                // error already), so that the match adds no error of its own.
                quote!(match self {
                    #(#arms)*
                    #[allow(unreachable_patterns)]
                    _ => ::core::unreachable!(),
                })
            }
        };
        quote! {
            #[automatically_derived]
            impl #impl_generics #p::aggregate::AggregateCommand for #ident #ty_generics #where_clause {
                fn aggregate_id(&self) -> ::std::string::String { #show }
            }
        }
    });
    // The route, for `flext::http::router`: data, with a parser of each field's text.
    let route = def.http.as_ref().filter(|_| complete).map(|r| {
        let method = &r.method;
        let path = &r.path;
        let accepted = r.accepted;
        let keyed = r.idempotency_key;
        // On the output type: an output without a schema is reported there.
        let output_schema = quote_spanned!(reply.span()=> __flext_out.subschema_for::<#reply>());
        let created = match &r.created {
            Some(c) => quote!(::core::option::Option::Some(#c)),
            None => quote!(::core::option::Option::None),
        };
        let keys = r.fields.iter().zip(&r.keys).map(|((f, _), key)| {
            let name = f.to_string();
            quote!((#name, #key))
        });
        let arms = r.fields.iter().map(|(f, ty)| {
            let text = f.to_string();
            // On the field's type: a type that cannot be read from text is reported there.
            let parse = quote_spanned!(ty.span()=> #p::field_value::<#ty>(#text, __flext_text));
            quote!(#text => ::core::option::Option::Some(#parse),)
        });
        quote! {
            fn __flext_field(
                __flext_name: &str,
                __flext_text: &str,
            ) -> ::core::option::Option<#p::Result<#p::serde_json::Value>> {
                match __flext_name {
                    #(#arms)*
                    _ => ::core::option::Option::None,
                }
            }
            #p::inventory::submit! {
                #p::RouteRegistration {
                    method: #method,
                    path: #path,
                    message: #name,
                    kind: #p::MessageKind::#variant,
                    type_path: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                    field: __flext_field,
                    keys: &[#(#keys),*],
                    created: #created,
                    accepted: #accepted,
                    idempotency_key: #keyed,
                    schema: |__flext_in: &mut #p::schemars::SchemaGenerator, __flext_out: &mut #p::schemars::SchemaGenerator| [
                        <#ident as #p::schemars::JsonSchema>::json_schema(__flext_in),
                        #output_schema,
                    ],
                }
            }
        }
    });
    quote! {
        #item
        #aggregate_id
        const _: () = {
            #route
            #header {
                const NAME: &'static str = #name;
                const KIND: #p::MessageKind = #p::MessageKind::#variant;
                const IDEMPOTENT: bool = #idempotent;
                const POSITIONAL: bool = #positional;
                const TIMEOUT_MS: ::core::option::Option<u64> = #timeout;
                const VERSION: u32 = #version;
                type Kind = #p::kind::#variant;
                type Reply = #reply;
                #validate
            }
            #registration
        };
    }
}

/// A routed message with `#[derive(JsonSchema)]` added (unless it derives it already),
/// for the OpenAPI document; serde's attributes shape the schema as they shape the JSON.
fn routed(item: &syn::DeriveInput, http: bool, p: &TokenStream) -> syn::DeriveInput {
    let mut item = item.clone();
    let derives_it = item.attrs.iter().any(|a| {
        a.path().is_ident("derive") && a.to_token_stream().to_string().contains("JsonSchema")
    });
    if http && !derives_it {
        let krate = quote!(#p::schemars).to_string().replace(' ', "");
        item.attrs
            .push(syn::parse_quote!(#[derive(#p::schemars::JsonSchema)]));
        item.attrs
            .push(syn::parse_quote!(#[schemars(crate = #krate)]));
    }
    item
}
