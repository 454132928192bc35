// The options are `name = "TypeName"` and `derive(..)`.

#[workpool::task(name = "not a name")]
fn one() -> u32 {
    1
}

#[workpool::task(batch = 8)]
fn two() -> u32 {
    2
}

fn main() {}
