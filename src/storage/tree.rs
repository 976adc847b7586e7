//! sled trees whose writes pass one gate, so that a snapshot can stop them all at once.
//!
//! sled has no snapshots: iterating its trees while others write yields no state the store
//! was ever in. So every write here (an insert, a removal, a batch, a transaction) holds the
//! store's [`WriteGate`] open for the one sled operation it is; a snapshot closes the gate,
//! waits for the operations under way, and then reads every tree while nothing changes.
//!
//! Between two sled operations the store is in a state a crash could leave: sled recovers a
//! prefix of its log, and every write path is built to recover from any prefix (see
//! `event_writes`). A snapshot is therefore exactly as consistent as the database after a
//! power cut, and reopening it runs the same recovery.
//!
//! Reads do not touch the gate: while a snapshot is taken, syncs and other reads go on and
//! only writers wait.

use std::{
    cell::Cell,
    ops::RangeBounds,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError},
};

use sled::{
    Batch, CompareAndSwapError, IVec, Iter, Transactional,
    transaction::{ConflictableTransactionResult, TransactionResult, TransactionalTree},
};

/// The gate every write passes and a snapshot closes.
#[derive(Default)]
pub(super) struct WriteGate {
    lock: RwLock<()>,
}

thread_local! {
    /// Gate passes this thread holds: a write nested in another (a transaction's closure
    /// calling a store method) must not queue behind a snapshot waiting for the outer one.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// One write's pass through the gate.
pub(super) struct Pass<'a> {
    _guard: Option<RwLockReadGuard<'a, ()>>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get() - 1));
    }
}

impl WriteGate {
    /// Lets one write through, waiting while a snapshot holds the gate closed. A writer on
    /// a tokio worker that has to wait hands the worker's other tasks to another thread
    /// first, so that reads carry on meanwhile.
    pub(super) fn pass(&self) -> Pass<'_> {
        let nested = HELD.with(|held| {
            held.set(held.get() + 1);
            held.get() > 1
        });
        if nested {
            return Pass { _guard: None };
        }
        let guard = match self.lock.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let wait = || self.lock.read().unwrap_or_else(PoisonError::into_inner);
                match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
                    _ => wait(),
                }
            }
        };
        Pass { _guard: Some(guard) }
    }

    /// Runs a write that is not on one tree (dropping a tree) through the gate.
    pub(super) fn pass_for<T>(&self, write: impl FnOnce() -> T) -> T {
        let _pass = self.pass();
        write()
    }

    /// Closes the gate: returns once no write is under way, and no write starts until the
    /// guard is dropped. Must not be called by a thread that holds a pass.
    pub(super) fn close(&self) -> RwLockWriteGuard<'_, ()> {
        debug_assert_eq!(HELD.with(Cell::get), 0, "closing the write gate from inside a write");
        self.lock.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A sled tree whose writes pass the gate. Reads are sled's own.
#[derive(Clone)]
pub(super) struct Tree {
    inner: sled::Tree,
    gate: Arc<WriteGate>,
}

impl Tree {
    pub fn open(db: &sled::Db, name: &str, gate: &Arc<WriteGate>) -> sled::Result<Self> {
        Ok(Self { inner: db.open_tree(name)?, gate: gate.clone() })
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        self.inner.get(key)
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> sled::Result<bool> {
        self.inner.contains_key(key)
    }

    pub fn iter(&self) -> Iter {
        self.inner.iter()
    }

    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        self.inner.range(range)
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.inner.scan_prefix(prefix)
    }

    #[cfg(test)]
    pub fn first(&self) -> sled::Result<Option<(IVec, IVec)>> {
        self.inner.first()
    }

    #[cfg(test)]
    /// Counts every entry: a scan of the whole tree, for tests and maintenance only.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> sled::Result<Option<IVec>> {
        let _pass = self.gate.pass();
        self.inner.insert(key, value)
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        let _pass = self.gate.pass();
        self.inner.remove(key)
    }

    pub fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        let _pass = self.gate.pass();
        self.inner.apply_batch(batch)
    }

    pub fn compare_and_swap<OV: AsRef<[u8]>, NV: Into<IVec>>(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<OV>,
        new: Option<NV>,
    ) -> sled::Result<Result<(), CompareAndSwapError>> {
        let _pass = self.gate.pass();
        self.inner.compare_and_swap(key, old, new)
    }

    pub fn fetch_and_update<V: Into<IVec>>(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnMut(Option<&[u8]>) -> Option<V>,
    ) -> sled::Result<Option<IVec>> {
        let _pass = self.gate.pass();
        self.inner.fetch_and_update(key, f)
    }

    pub fn transaction<A, E>(
        &self,
        f: impl Fn(&TransactionalTree) -> ConflictableTransactionResult<A, E>,
    ) -> TransactionResult<A, E> {
        let _pass = self.gate.pass();
        self.inner.transaction(f)
    }
}

/// A sled transaction over several trees, through the gate: `(&a, &b).transaction(...)`.
pub(super) trait Transact<E> {
    type View;

    fn transaction<A>(
        &self,
        f: impl Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
    ) -> TransactionResult<A, E>;
}

/// Implements [`Transact`] for tuples of `&Tree`, as sled implements `Transactional`.
macro_rules! transact_tuple {
    ($($index:tt: $view:ident),+) => {
        impl<E> Transact<E> for ($(transact_tuple!(@tree $index),)+) {
            type View = ($($view,)+);

            fn transaction<A>(
                &self,
                f: impl Fn(&Self::View) -> ConflictableTransactionResult<A, E>,
            ) -> TransactionResult<A, E> {
                let _pass = self.0.gate.pass();
                ($(&self.$index.inner,)+).transaction(f)
            }
        }
    };
    (@tree $index:tt) => { &Tree };
}

type View = TransactionalTree;
transact_tuple!(0: View, 1: View);
transact_tuple!(0: View, 1: View, 2: View);
transact_tuple!(0: View, 1: View, 2: View, 3: View);
transact_tuple!(0: View, 1: View, 2: View, 3: View, 4: View);
