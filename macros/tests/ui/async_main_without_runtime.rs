// `#[workpool::main]` on an `async fn main` needs the runtime's attribute below it.

#[workpool::main]
async fn main() {}
