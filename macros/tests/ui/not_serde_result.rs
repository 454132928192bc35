// A result type that is not serde is reported at the return type, saying what to do.

struct Opaque(u32);

#[workpool::task]
fn wrap(value: u32) -> Opaque {
    Opaque(value)
}

fn main() {}
