// Task arguments travel to another process: a parameter (or a result) cannot borrow.

#[workpool::task]
fn count(text: &str, data: &[u8], words: Vec<&str>) -> usize {
    text.len() + data.len() + words.len()
}

#[workpool::task]
fn first(words: Vec<String>) -> &'static str {
    if words.is_empty() { "none" } else { "some" }
}

fn main() {}
