//! Where the flext crate is, resolved once per invocation from `crate = path`, and the
//! versioned private module generated code reaches the runtime through.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The name of the facade's private module: `__private_` and the version with `_` for
/// `.`, so that only the runtime of the same version resolves it (serde's
/// `__private228`). The facade declares the module under the same name.
pub fn private_module() -> syn::Ident {
    format_ident!(
        "__private_{}",
        env!("CARGO_PKG_VERSION").replace(['.', '-'], "_")
    )
}

/// The path generated code names the runtime by.
#[derive(Clone)]
pub struct Krate {
    path: syn::Path,
}

impl Krate {
    /// `::flext`, or the `crate = path` the user gave.
    pub fn new(path: Option<syn::Path>) -> Krate {
        Krate {
            path: path.unwrap_or_else(|| syn::parse_quote!(::flext)),
        }
    }

    /// `::flext::__private_X_Y_Z`: every runtime item generated code uses.
    pub fn private(&self) -> TokenStream {
        let path = &self.path;
        let module = private_module();
        quote!(#path::#module)
    }
}
