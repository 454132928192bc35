// A worker finds a task by its concrete type: generic functions cannot be tasks.

#[workpool::task]
fn largest<T: Ord + Copy>(values: Vec<T>) -> Option<T> {
    values.iter().copied().max()
}

fn main() {}
