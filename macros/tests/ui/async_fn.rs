// A task runs to completion with no async runtime.

#[workpool::task]
async fn fetch(url: String) -> usize {
    url.len()
}

fn main() {}
