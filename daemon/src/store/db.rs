//! The open redb database, shared by the store actor and every reader, and
//! opened again in place after a storage failure.
//!
//! After one failed write (a full disk, a failing device) redb refuses every
//! later operation with "Previous I/O error occurred. Please close and
//! re-open the database", even once space is back. A daemon that runs for
//! months unattended cannot wait for someone to restart it, so the writer
//! hands the failure here: the database is closed and opened again, and
//! until a write succeeds the condition is kept as the store's fault, which
//! `status` reports.
//!
//! Invariant: nothing outside this module holds a `redb::Database`; readers
//! and the writer take the current one for each transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use super::StoreError;

/// How long a reopen waits for the old handle's last readers to let go (the
/// file lock is per open handle, so the new one cannot be taken before).
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The shared database handle.
pub(crate) struct SharedDb {
    path: PathBuf,
    current: RwLock<Option<Arc<Database>>>,
    /// Why writes fail, while they do, and when one last failed.
    fault: Mutex<Option<(String, Instant)>>,
}

/// A fault is cleared by a write that succeeds this long after the last
/// failed one: on a full disk small writes still fit now and then while
/// a book's passages do not, and `status` should not flicker.
const FAULT_CLEARS_AFTER: Duration = Duration::from_secs(30);

impl SharedDb {
    pub(crate) fn new(path: PathBuf, database: Database) -> Self {
        SharedDb {
            path,
            current: RwLock::new(Some(Arc::new(database))),
            fault: Mutex::new(None),
        }
    }

    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.current.read().clone().ok_or_else(|| StoreError::Storage {
            reason: self.fault().unwrap_or_else(|| "the database is being opened again".into()),
        })
    }

    /// A read transaction on the current database.
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.get()?.begin_read()?)
    }

    /// A write transaction on the current database (only the store actor
    /// writes).
    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        Ok(self.get()?.begin_write()?)
    }

    /// Why writes are failing, if they are.
    pub(crate) fn fault(&self) -> Option<String> {
        self.fault.lock().as_ref().map(|(reason, _)| reason.clone())
    }

    /// Runs one write operation: first opens the database again if an
    /// earlier failure closed it, then records a storage failure of this
    /// one (closing and reopening the database so the next write can work)
    /// or clears the fault when it succeeded.
    pub(crate) fn guard<T>(&self, op: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.run(op, false)
    }

    /// [`guard`](Self::guard) for a write that stores a book's passages or
    /// vectors: when it succeeds, the disk has room again, and the fault is
    /// cleared at once.
    pub(crate) fn guard_storing<T>(&self, op: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.run(op, true)
    }

    fn run<T>(&self, op: impl FnOnce() -> Result<T, StoreError>, storing: bool) -> Result<T, StoreError> {
        if self.current.read().is_none() {
            if let Err(e) = self.reopen() {
                return Err(StoreError::Storage {
                    reason: format!("{}; opening the database again failed: {e}", self.fault().unwrap_or_default()),
                });
            }
        }
        match op() {
            Ok(value) => {
                let mut fault = self.fault.lock();
                if fault.as_ref().is_some_and(|(_, at)| storing || at.elapsed() >= FAULT_CLEARS_AFTER) {
                    *fault = None;
                    tracing::info!(path = %self.path.display(), "the database accepts writes again");
                }
                Ok(value)
            }
            Err(e) => match storage_failure(&e) {
                Some(reason) => {
                    tracing::error!(path = %self.path.display(), %reason, "a write failed on the disk; opening the database again");
                    *self.fault.lock() = Some((reason.clone(), Instant::now()));
                    if let Err(again) = self.reopen() {
                        tracing::warn!(error = %again, "the database stays closed until the next write tries again");
                    }
                    Err(StoreError::Storage { reason })
                }
                None => Err(e),
            },
        }
    }

    /// Closes the current handle and opens the file again. The last
    /// committed transaction is what redb finds on disk, so nothing
    /// committed is lost; the failed write never happened.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut current = self.current.write();
        let old = current.take();
        // Readers that took the old handle a moment ago finish first; the
        // file lock goes with the last of them.
        let deadline = Instant::now() + REOPEN_WAIT;
        if let Some(old) = old {
            let mut old = Some(old);
            while let Some(arc) = old.take() {
                match Arc::try_unwrap(arc) {
                    Ok(database) => drop(database),
                    Err(arc) if Instant::now() < deadline => {
                        old = Some(arc);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(arc) => {
                        *current = Some(arc);
                        return Err(StoreError::Storage {
                            reason: "readers still hold the old database handle".into(),
                        });
                    }
                }
            }
        }
        // Read transactions begun on the old handle keep its file open (and
        // locked) until they end; they are short.
        loop {
            match Database::create(&self.path) {
                Ok(database) => {
                    *current = Some(Arc::new(database));
                    return Ok(());
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The reason, when `e` is a failure of the disk under the database (an
/// I/O error, or redb refusing to go on after one) rather than of the
/// request.
fn storage_failure(e: &StoreError) -> Option<String> {
    let StoreError::Db(db) = e else { return None };
    match db {
        redb::Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => Some(format!(
            "the disk holding the data directory is full ({io}); free some space: writes resume by themselves"
        )),
        redb::Error::Io(io) => Some(format!("the data directory's disk failed a write ({io})")),
        redb::Error::PreviousIo => Some("an earlier write to the data directory failed".into()),
        _ => None,
    }
}
