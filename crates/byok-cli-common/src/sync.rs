//! The one way the workstation binaries take a lock. A lock that a panicking thread held
//! (poisoned) stops the command with a panic naming the lock: what they guard (a batch's
//! queue, its durability groups, the token index, the evidence log's chain head, the vault's
//! pacing buckets) decides which keys are recorded, and a ceremony must not go on from state a
//! crashed thread may have left half-changed.
//!
//! The emulator takes a poisoned lock anyway (`crates/kv-emulator/src/sync.rs`): it is a server
//! whose later requests must not all fail because one panicked. The two policies are two on
//! purpose.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`; panics, naming `what`, if a thread panicked while holding it.
pub fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(_) => panic!("the {what} lock was held by a thread that panicked; stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpoisoned_lock_is_taken() {
        let m = Mutex::new(1);
        *lock(&m, "test") += 1;
        assert_eq!(*lock(&m, "test"), 2);
    }

    #[test]
    fn a_poisoned_lock_stops_with_its_name() {
        let m = Mutex::new(0);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = m.lock().unwrap();
                panic!("worker failed");
            })
            .join()
        });
        assert!(m.is_poisoned());
        let err = std::panic::catch_unwind(|| drop(lock(&m, "batch queue"))).unwrap_err();
        let text = err.downcast_ref::<String>().unwrap();
        assert!(text.contains("the batch queue lock"), "{text}");
    }
}
