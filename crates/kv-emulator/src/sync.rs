//! The one way the emulator takes a lock. A lock a panicking thread held (poisoned) is taken
//! anyway: what the emulator guards (the parsed-KEK cache, reader connections, the writer's
//! queue, pending deletions, throttling budgets) is consistent between statements, and a
//! request that panicked must not make every later one fail.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, poisoned or not.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
