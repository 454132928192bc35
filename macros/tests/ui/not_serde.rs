// A parameter or result type that is not serde is reported at that type, saying what to do.

struct Opaque(u32);

#[workpool::task]
fn unwrap(value: Opaque) -> u32 {
    value.0
}

fn main() {}
