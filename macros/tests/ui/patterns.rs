// Each parameter becomes a named field: patterns cannot, nor can `impl Trait`.

#[workpool::task]
fn area((w, h): (u32, u32)) -> u32 {
    w * h
}

#[workpool::task]
fn total(values: impl IntoIterator<Item = u32>) -> u32 {
    values.into_iter().sum()
}

fn main() {}
