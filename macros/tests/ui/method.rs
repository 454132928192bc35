// The task type is made of the parameters: methods cannot be tasks.

struct Image(Vec<u8>);

impl Image {
    #[workpool::task]
    fn brightness(self, scale: u32) -> u32 {
        self.0.len() as u32 * scale
    }
}

fn main() {}
