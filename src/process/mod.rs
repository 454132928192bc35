//! Both ends of the worker protocol, side by side.
//!
//! * [`wire`]: the frames, their layout and their parsers (the only file that knows a frame's
//!   bytes).
//! * [`spawn`]: the parent's side of a worker's life: start it, greet it, stop it, reap it.
//! * [`forkserver`]: the small process workers are forked from, and its client.
//! * [`claims`]: the shared-memory ring through which tasks written ahead are taken back.
//! * [`worker`]: the child's side: `init()`, and the loop that serves tasks.

pub(crate) mod claims;
pub(crate) mod forkserver;
pub(crate) mod spawn;
pub(crate) mod wire;
pub(crate) mod worker;
