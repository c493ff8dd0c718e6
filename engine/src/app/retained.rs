//! Transaction text kept by the parsers (DNS names, HTTP fields of the
//! transactions after a flow's first), counted against one process-wide cap.
//!
//! Each flow may keep up to its own bound (see `dns` and `http`); the sum over
//! every open flow is capped at [`MAX_RETAINED_TOTAL`], so many flows full of
//! long names cannot take the memory. What does not fit is not stored and is
//! still counted in the flow's `transaction_count`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of transaction text all flows of the process may keep at once.
pub const MAX_RETAINED_TOTAL: usize = 256 << 20;

/// A capped count of bytes kept.
#[derive(Debug)]
pub struct Pool {
    used: AtomicUsize,
    cap: usize,
}

impl Pool {
    /// An empty pool that lets at most `cap` bytes be kept at once.
    pub const fn new(cap: usize) -> Self {
        Pool { used: AtomicUsize::new(0), cap }
    }

    /// Bytes kept now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The process-wide pool every parser's [`Retained`] draws from.
pub static POOL: Pool = Pool::new(MAX_RETAINED_TOTAL);

/// The bytes one flow's metadata holds against a [`Pool`]; given back when
/// it is dropped. A clone (a verdict's or a record's copy of the metadata)
/// holds nothing: only the parser's own copy counts.
pub struct Retained {
    pool: &'static Pool,
    held: usize,
}

impl Default for Retained {
    fn default() -> Self {
        Retained { pool: &POOL, held: 0 }
    }
}

impl Retained {
    /// Takes `n` more bytes if the pool's cap allows.
    pub fn try_take(&mut self, n: usize) -> bool {
        let before = self.pool.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.pool.cap {
            self.pool.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        self.held += n;
        true
    }

    /// Bytes this copy holds.
    pub fn held(&self) -> usize {
        self.held
    }
}

/// Shows what this copy holds, never the pool's running total (which other
/// flows change): metadata prints the same whenever it is printed.
impl std::fmt::Debug for Retained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retained").field("held", &self.held).finish()
    }
}

impl Clone for Retained {
    fn clone(&self) -> Self {
        Retained { pool: self.pool, held: 0 }
    }
}

/// Bookkeeping, not content: two metadata values are equal whatever they hold.
impl PartialEq for Retained {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Retained {}

impl Drop for Retained {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_held_bytes_come_back_and_clones_hold_none() {
        static SMALL: Pool = Pool::new(1000);
        let mut a = Retained { pool: &SMALL, held: 0 };
        assert!(a.try_take(600));
        let mut b = a.clone();
        assert_eq!((a.held(), b.held()), (600, 0));
        assert!(!b.try_take(401), "over the cap");
        assert!(b.try_take(400));
        assert_eq!(SMALL.used(), 1000);
        drop(a);
        assert_eq!(SMALL.used(), 400);
        drop(b);
        assert_eq!(SMALL.used(), 0);
        assert_eq!(format!("{:?}", Retained { pool: &SMALL, held: 0 }), "Retained { held: 0 }");
    }
}
