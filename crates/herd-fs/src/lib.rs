//! Durable files for Herd: every file Herd must find intact after a crash or a power loss is
//! written through [`write_atomic`] (or [`write_atomic_with`]), and every "one process at a
//! time" rule is a [`LockFile`]; where the agent acts as root on paths a local user can
//! change, it goes through a [`Dir`] handle (`openat`, `O_NOFOLLOW`, `unlinkat`). Not a general
//! file-system toolkit: only what Herd needs, no async.
//!
//! The guarantees, which every caller relies on:
//! - after a crash at any instant, a file written here holds its old content or its new
//!   content, never a mix, and once a write returned the new content survives power loss;
//! - a temporary file a crash left behind never blocks a later write (each write uses a
//!   temporary with a unique name) and is recognisable, so [`remove_stale_temporaries`] can
//!   clean it up once its writer is gone;
//! - a lock is exclusive across processes and released when its holder exits or dies.

mod dir;
mod lock;
mod write;

pub use dir::{Dir, DirError, FileId};
pub use lock::{LockError, LockFile, LockHolder};
pub use write::{
    Step, WriteError, is_temporary, remove_stale_temporaries, replace_without_dir_sync, sync_dir,
    write_atomic, write_atomic_with,
};
