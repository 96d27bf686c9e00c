//! The agent tests' TUF mirror: herd-lab's [`herd_lab::mirror::Mirror`] (the one `herd demo`
//! uses too), started on loopback — a test that cannot bind a loopback port fails here.
//!
//! Shared by the agent's unit tests (included with `#[path]`) and its integration tests.

#![allow(dead_code)] // Each test binary uses a different part.

pub use herd_lab::mirror::Behaviour;

/// A running mirror; stops when dropped. Everything but starting is herd-lab's.
pub struct Mirror(herd_lab::mirror::Mirror);

impl Mirror {
    pub fn start() -> Mirror {
        Mirror(herd_lab::mirror::Mirror::start().expect("a mirror on a loopback port"))
    }
}

impl std::ops::Deref for Mirror {
    type Target = herd_lab::mirror::Mirror;

    fn deref(&self) -> &herd_lab::mirror::Mirror {
        &self.0
    }
}
