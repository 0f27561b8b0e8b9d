//! Locks that a panic does not poison for good.
//!
//! Every lock in Alertray guards a small value that is replaced or updated in one step (a
//! status, a map entry, a cached chain), so what a thread that panicked while holding it left
//! behind is whole: the next holder takes it as it is, rather than panicking in turn.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`], taking the value over from a holder that panicked.
pub trait MutexExt<T: ?Sized> {
    /// Locks, waiting for the current holder.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`RwLock::read`] and [`RwLock::write`], taking the value over from a writer that panicked.
pub trait RwLockExt<T: ?Sized> {
    /// Locks for reading.
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    /// Locks for writing.
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_still_hands_out_its_value() {
        let m = Mutex::new(1);
        let l = RwLock::new(1);
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _m = m.lock().unwrap();
                    let _l = l.write().unwrap();
                    panic!("a holder panics");
                })
                .join();
        });
        assert!(m.is_poisoned() && l.is_poisoned());
        *m.locked() += 1;
        *l.writing() += 1;
        assert_eq!((*m.locked(), *l.reading()), (2, 2));
    }
}
