//! The attribute macros of [workpool](https://docs.rs/workpool): `#[workpool::task]` and
//! `#[workpool::main]`. Use them through `workpool`, which re-exports them; their documentation
//! is there.
//!
//! The generated code names workpool only by absolute paths (`::workpool::Task`,
//! `::workpool::__private::serde`), so it works in any crate that depends on workpool, whatever
//! else that crate depends on or renames.

mod main_attr;
mod task;

use proc_macro::TokenStream;

// The two attributes are documented where workpool re-exports them, with examples that compile
// against workpool; words here would show under those on docs.rs.
#[expect(missing_docs, reason = "documented at its re-export in workpool")]
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    or_error(task::expand(args.into(), item.clone().into()), item)
}

#[expect(missing_docs, reason = "documented at its re-export in workpool")]
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    or_error(main_attr::expand(args.into(), item.clone().into()), item)
}

/// The expansion, or the errors followed by the item as it was written: the function stays
/// defined, so its callers do not add "cannot find function" errors to the real one.
fn or_error(expanded: syn::Result<proc_macro2::TokenStream>, item: TokenStream) -> TokenStream {
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            let mut tokens: TokenStream = e.into_compile_error().into();
            tokens.extend(item);
            tokens
        }
    }
}
