//! `#[workpool::task]`: a free function becomes a task type named after it.
//!
//! ```text
//! #[workpool::task]                      fn add(a: u64, b: u64) -> u64 { a + b }   // kept as is
//! fn add(a: u64, b: u64) -> u64 { .. }   #[derive(Serialize, Deserialize)]
//!                                ──▶     struct Add { a: u64, b: u64 }
//!                                        impl Task for Add { type Output = u64;
//!                                                            fn run(self) -> u64 { add(self.a, self.b) } }
//!                                        register!(Add);
//! ```
//!
//! What cannot work is refused here, with what to write instead: `async`, `unsafe` and generic
//! functions, methods, patterns as parameters, and parameter or return types that borrow or are
//! not concrete (`&str`, `impl Trait`, `dyn Trait`, function pointers). A parameter type that
//! is not serde is left to the compiler, through a bound whose message workpool writes
//! (`__private::TaskArgument`), reported at the parameter's type.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, Path, PathArguments, ReturnType, Signature, Type,
};

/// The refusal of a parameter type that borrows, anywhere inside it.
const OWNED: &str = "take an owned value (String, Vec<u8>, T): task arguments travel to another process";

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let options = Options::parse(args)?;
    let mut function: ItemFn = syn::parse2(item)?;
    check_signature(&function.sig)?;
    let fields = take_fields(&mut function.sig)?;
    let output = output_type(&function.sig.output)?;

    let fn_name = &function.sig.ident;
    let vis = &function.vis;
    let name = options.name.unwrap_or_else(|| format_ident!("{}", upper_camel_case(&fn_name.to_string())));
    let docs = struct_docs(&function.attrs, fn_name);
    let derives = &options.derives;
    let serde = quote!(::workpool::__private::serde);

    let field_defs = fields.iter().map(|Field { ident, ty, attrs }| {
        let doc = format!("Argument `{ident}` of [`{fn_name}()`].");
        quote!(#[doc = #doc] #(#attrs)* #vis #ident: #ty)
    });
    let body = if fields.is_empty() { quote!(;) } else { quote!({ #(#field_defs),* }) };
    let idents = fields.iter().map(|f| &f.ident);
    // The bounds, stated once per type at the type: a missing `Serialize` reads as a problem of
    // that parameter, with workpool's advice, not only as one of the derive.
    let argument_checks = fields.iter().map(|Field { ty, .. }| {
        quote_spanned!(ty.span()=> const _: fn() = ::workpool::__private::assert_task_argument::<#ty>;)
    });
    let output_check = match &function.sig.output {
        ReturnType::Default => quote!(),
        ReturnType::Type(_, ty) => {
            quote_spanned!(ty.span()=> const _: fn() = ::workpool::__private::assert_task_output::<#ty>;)
        }
    };

    Ok(quote! {
        #function

        // Before the struct: a parameter type that is not serde is then reported with
        // workpool's message before what the derives say of it. (The `Task` impl's own bound on
        // `Output` is checked earlier still, so for the return type rustc's words come first.)
        #(#argument_checks)*
        #output_check

        #(#docs)*
        #[derive(#serde::Serialize, #serde::Deserialize #(, #derives)*)]
        #[serde(crate = "::workpool::__private::serde")]
        #vis struct #name #body

        impl ::workpool::Task for #name {
            type Output = #output;
            fn run(self) -> Self::Output {
                #fn_name(#(self.#idents),*)
            }
        }

        ::workpool::register!(#name);
    })
}

// ===== options =====

/// `#[workpool::task(name = "Sum", derive(Debug, Clone))]`.
#[derive(Default)]
struct Options {
    /// The task type's name, instead of the function's in UpperCamelCase.
    name: Option<Ident>,
    /// More derives for the task type (it always derives `Serialize` and `Deserialize`).
    derives: Vec<Path>,
}

impl Options {
    fn parse(args: TokenStream) -> syn::Result<Self> {
        let mut options = Options::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let name: LitStr = meta.value()?.parse()?;
                options.name = Some(name.parse().map_err(|_| {
                    syn::Error::new(name.span(), "`name` must be a type name, such as `name = \"Resize\"`")
                })?);
                Ok(())
            } else if meta.path.is_ident("derive") {
                meta.parse_nested_meta(|derive| {
                    options.derives.push(derive.path);
                    Ok(())
                })
            } else {
                Err(meta.error("unknown option: #[workpool::task] takes `name = \"TypeName\"` and `derive(Trait, ..)`"))
            }
        });
        syn::parse::Parser::parse2(parser, args)?;
        Ok(options)
    }
}

// ===== the function =====

/// Refuses what cannot become a task, whatever the parameters.
fn check_signature(sig: &Signature) -> syn::Result<()> {
    let refuse = |span: Span, message: &str| Err(syn::Error::new(span, message));
    if let Some(token) = &sig.asyncness {
        return refuse(
            token.span,
            "#[workpool::task] cannot take an `async fn`: a task runs to completion in a worker process or on a \
             pool thread, with no async runtime; make it a plain `fn` (it may start a runtime and block on it)",
        );
    }
    if let syn::Safety::Unsafe(token) = &sig.safety {
        return refuse(
            token.span,
            "#[workpool::task] cannot take an `unsafe fn`: the task would call it with nobody to uphold its \
             safety contract; make the function safe, with an `unsafe` block inside",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return refuse(
            sig.generics.span(),
            "#[workpool::task] cannot take a generic function: a worker finds a task by its concrete type; \
             write a non-generic function that calls this one with the types you need",
        );
    }
    if let Some(variadic) = &sig.variadic {
        return refuse(variadic.span(), "#[workpool::task] cannot take a variadic function");
    }
    Ok(())
}

/// A parameter, as a field of the task type.
struct Field {
    ident: Ident,
    ty: Box<Type>,
    /// The parameter's `#[serde(..)]` attributes, moved from the function to the field.
    attrs: Vec<Attribute>,
}

/// The parameters as fields, in order; every refused parameter is reported, not only the first.
fn take_fields(sig: &mut Signature) -> syn::Result<Vec<Field>> {
    let mut fields = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut refuse = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for input in &mut sig.inputs {
        let param = match input {
            FnArg::Typed(param) => param,
            FnArg::Receiver(receiver) => {
                refuse(syn::Error::new(
                    receiver.span(),
                    "#[workpool::task] goes on a free function, not a method: the task type is made of the \
                     parameters; write a free function that takes the value as a parameter",
                ));
                continue;
            }
        };
        let (serde_attrs, kept): (Vec<_>, Vec<_>) = param.attrs.drain(..).partition(|a| a.path().is_ident("serde"));
        param.attrs = kept;
        if let Err(e) = owned(&param.ty, OWNED) {
            refuse(e);
            continue;
        }
        match &*param.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                fields.push(Field { ident: pat.ident.clone(), ty: param.ty.clone(), attrs: serde_attrs });
            }
            other => refuse(syn::Error::new(
                other.span(),
                "a task parameter must be a plain name (`point: Point`), which becomes a field of the task type; \
                 destructure it inside the function",
            )),
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(fields),
    }
}

/// The task's `Output`: the return type, which must be owned too.
fn output_type(output: &ReturnType) -> syn::Result<TokenStream> {
    match output {
        ReturnType::Default => Ok(quote!(())),
        ReturnType::Type(_, ty) => {
            owned(ty, "return an owned value (String, Vec<u8>, T): a task's result travels back from another process")?;
            Ok(quote!(#ty))
        }
    }
}

/// Refuses a type that borrows or is not concrete, anywhere inside it (`Vec<&str>` too);
/// `borrow` is the message for a borrow.
fn owned(ty: &Type, borrow: &str) -> syn::Result<()> {
    let refuse = |message: &str| Err(syn::Error::new(ty.span(), message));
    match ty {
        Type::Reference(_) => refuse(borrow),
        Type::ImplTrait(_) => refuse(
            "`impl Trait` cannot be part of a task: the task type needs a concrete type that can be sent to a \
             worker process; name the type",
        ),
        Type::TraitObject(_) => refuse(
            "a trait object cannot travel to another process: name a concrete type (an enum of the cases, if \
             there are several)",
        ),
        Type::FnPtr(_) => refuse(
            "a function pointer cannot travel to another process (its address means nothing there): pass data \
             that says what to call, such as an enum",
        ),
        Type::Ptr(_) => refuse("a raw pointer cannot travel to another process: take an owned value"),
        Type::Array(array) => owned(&array.elem, borrow),
        Type::Slice(slice) => owned(&slice.elem, borrow),
        Type::Group(group) => owned(&group.elem, borrow),
        Type::Paren(paren) => owned(&paren.elem, borrow),
        Type::Tuple(tuple) => tuple.elems.iter().try_for_each(|elem| owned(elem, borrow)),
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                owned(&qself.ty, borrow)?;
            }
            for segment in &path.path.segments {
                let PathArguments::AngleBracketed(args) = &segment.arguments else { continue };
                for arg in &args.args {
                    match arg {
                        GenericArgument::Type(inner) => owned(inner, borrow)?,
                        GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                            return Err(syn::Error::new(lifetime.span(), borrow));
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The function's doc comments, then a line that says what the type is.
fn struct_docs(attrs: &[Attribute], fn_name: &Ident) -> Vec<TokenStream> {
    let mut docs: Vec<TokenStream> = attrs.iter().filter(|a| a.path().is_ident("doc")).map(|a| quote!(#a)).collect();
    if !docs.is_empty() {
        docs.push(quote!(#[doc = ""]));
    }
    let line =
        format!("The task form of [`{fn_name}()`]: its fields are the arguments, and running it calls the function.");
    docs.push(quote!(#[doc = #line]));
    docs
}

/// `resize_image` → `ResizeImage`, `fib` → `Fib`, `r#type` → `Type`, `http2_get` → `Http2Get`.
fn upper_camel_case(snake: &str) -> String {
    let snake = snake.strip_prefix("r#").unwrap_or(snake);
    let mut camel = String::with_capacity(snake.len());
    for word in snake.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            camel.extend(first.to_uppercase());
            camel.push_str(chars.as_str());
        }
    }
    camel
}

#[cfg(test)]
mod tests {
    use super::upper_camel_case;

    #[test]
    fn snake_case_becomes_upper_camel_case() {
        assert_eq!(upper_camel_case("resize_image"), "ResizeImage");
        assert_eq!(upper_camel_case("fib"), "Fib");
        assert_eq!(upper_camel_case("r#type"), "Type");
        assert_eq!(upper_camel_case("http2_get"), "Http2Get");
        assert_eq!(upper_camel_case("__leading__and_double"), "LeadingAndDouble");
        assert_eq!(upper_camel_case("Already"), "Already");
    }
}
