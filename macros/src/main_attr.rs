//! `#[workpool::main]`: `workpool::init()` becomes the first thing `main` does.
//!
//! A plain `fn main` gets `::workpool::init();` as its first statement. An `async fn main`
//! still carries its runtime's attribute (`#[tokio::main]` written below ours: outer attributes
//! expand first), and init must run before that runtime starts, or every worker process would
//! build a runtime before serving tasks. So the async function moves, with its attributes,
//! into a synchronous `main` that calls init and then it:
//!
//! ```text
//! #[workpool::main]                  fn main() -> R {
//! #[tokio::main]                         #[tokio::main]
//! async fn main() -> R { body }  ──▶     async fn main() -> R { body }
//!                                        ::workpool::init();
//!                                        main()
//!                                    }
//! ```
//!
//! With `#[tokio::main]` written above ours, tokio has expanded first and we see a plain
//! `fn main` whose body builds the runtime: init goes first there too.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(args, "#[workpool::main] takes no options"));
    }
    let mut function: ItemFn = syn::parse2(item)?;
    if function.sig.asyncness.is_none() {
        function.block.stmts.insert(0, syn::parse_quote!(::workpool::init();));
        return Ok(quote!(#function));
    }
    if !function.attrs.iter().any(|a| is_runtime_attribute(a.path())) {
        return Err(syn::Error::new(
            function.sig.asyncness.map(|a| a.span).unwrap_or_else(proc_macro2::Span::call_site),
            "an `async fn main` needs a runtime attribute below #[workpool::main], such as \
             `#[workpool::main] #[tokio::main] async fn main()`: workpool::init() then runs before the runtime starts",
        ));
    }
    let docs: Vec<_> = function.attrs.iter().filter(|a| a.path().is_ident("doc")).cloned().collect();
    function.attrs.retain(|a| !a.path().is_ident("doc"));
    let vis = &function.vis;
    let ident = &function.sig.ident;
    let output = &function.sig.output;
    Ok(quote! {
        #(#docs)*
        #vis fn #ident() #output {
            #function
            ::workpool::init();
            #ident()
        }
    })
}

/// Anything but documentation and lint levels: a runtime's attribute, as far as we can tell.
fn is_runtime_attribute(path: &syn::Path) -> bool {
    !["doc", "allow", "expect", "warn", "deny", "forbid"].iter().any(|name| path.is_ident(name))
}
