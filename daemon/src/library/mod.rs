//! Library folders: the folders a user points Mindory at once, kept in sync
//! from then on by the library actor.
//!
//! The actor owns one `notify` watcher per folder (inotify on Linux). File
//! system events only mark paths dirty; after a short quiet period (the
//! debounce) the dirty paths are reconciled with the store by
//! [`scan::plan`], the one algorithm behind the first scan, the watcher,
//! polling, the periodic sweep and the check at start-up. When a folder
//! cannot be watched (the inotify watch limit is exhausted, or it is on a
//! network file system whose changes inotify never sees) it is polled
//! instead, and `status` says so.
//!
//! Invariant: every change reaches the store through the ingest handle
//! (queue, move, remove), so the store and the index stay the only truth; the
//! actor keeps no state that a restart could lose except what it re-derives
//! by sweeping every folder on start.

pub mod scan;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub use crate::events::ScanReport;
use crate::events::{EventBus, EventKind};
use crate::files::{self, Seen};
use crate::ingest::{IngestError, IngestHandle};
use crate::store::{StoreError, StoreHandle};
use crate::supervisor::{Slot, SupervisorHandle};

/// How folders are watched.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Poll every folder instead of using inotify (also `MINDORY_WATCH=poll`).
    pub force_polling: bool,
    /// How often polled folders are rescanned.
    pub poll_interval: Duration,
    /// How often every folder is swept, to catch anything events missed.
    pub sweep_interval: Duration,
    /// Quiet time after the last event before dirty paths are reconciled.
    pub debounce: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            force_polling: std::env::var("MINDORY_WATCH").is_ok_and(|v| v.eq_ignore_ascii_case("poll")),
            poll_interval: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(15 * 60),
            debounce: Duration::from_millis(250),
        }
    }
}

/// How long adding a folder waits for files that are still being written.
const ADD_SETTLE_WAIT: Duration = Duration::from_secs(30);

/// Longest a burst of events can postpone reconciliation.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// How a folder is being followed.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMode {
    /// File-system events (inotify).
    Events,
    /// Periodic rescans, with the reason events are not used.
    Polling(String),
}

/// A library folder and how it is followed.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderInfo {
    /// Canonical path.
    pub path: String,
    /// Events or polling (with why).
    pub mode: WatchMode,
    /// The last full scan, when one ran in this daemon's life.
    pub last_scan: Option<ScanReport>,
}

/// Why a folder operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LibraryError {
    /// The path is not a directory.
    #[error("{0} is not a directory; `mindory add` takes single files")]
    NotADirectory(String),
    /// The path cannot be opened.
    #[error("cannot open {path}: {reason}")]
    Unreadable {
        /// The path as given.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The folder is not in the library.
    #[error("{0} is not a library folder; `mindory folders ls` lists them")]
    NotAFolder(String),
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Ingestion refused a job.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The library actor is not running.
    #[error("the library watcher is not running: {0}")]
    Unavailable(String),
}

impl LibraryError {
    /// What kind of failure this is (see [`crate::error_kind`]).
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            LibraryError::NotADirectory(_) | LibraryError::Unreadable { .. } => ErrorKind::Invalid,
            LibraryError::NotAFolder(_) => ErrorKind::NotFound,
            LibraryError::Store(e) => e.kind(),
            LibraryError::Ingest(e) => e.kind(),
            LibraryError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

pub(crate) enum LibraryMsg {
    AddFolder {
        path: String,
        reply: RpcReplyPort<Result<ScanReport, LibraryError>>,
    },
    RemoveFolder {
        path: String,
        reply: RpcReplyPort<Result<u64, LibraryError>>,
    },
    /// Paths a watcher saw change.
    Changed(Vec<PathBuf>),
    /// A watcher reported an error (e.g. the watch limit was hit later).
    WatchFailed { folder: PathBuf, reason: String },
    /// The debounce timer fired.
    Flush,
    /// Time to rescan the polled folders.
    Poll,
    /// Time to sweep every folder.
    Sweep,
}

/// What the actor needs.
#[derive(Clone)]
pub(crate) struct LibraryArgs {
    pub store: StoreHandle,
    pub ingest: IngestHandle,
    pub events: EventBus,
    pub config: WatchConfig,
    /// Its own slot, for the watchers' callbacks (they outlive no restart:
    /// a restarted actor builds new watchers).
    pub slot: Slot<LibraryMsg>,
    /// What `folders()` reads: published by the actor after every change,
    /// so status never waits behind a long scan.
    pub view: FolderView,
}

/// The folders as last published by the actor.
pub type FolderView = std::sync::Arc<parking_lot::RwLock<Vec<FolderInfo>>>;

struct Watched {
    path: PathBuf,
    mode: WatchMode,
    // Dropping the watcher stops its events.
    _watcher: Option<notify::RecommendedWatcher>,
    last_scan: Option<ScanReport>,
}

pub(crate) struct LibraryState {
    args: LibraryArgs,
    myself: ActorRef<LibraryMsg>,
    folders: Vec<Watched>,
    dirty: HashSet<PathBuf>,
    first_dirty: Option<Instant>,
    last_event: Instant,
    flush_scheduled: bool,
    unsettled: HashMap<PathBuf, Seen>,
}

/// The actor.
#[derive(Clone)]
pub(crate) struct LibraryActor;

impl Actor for LibraryActor {
    type Msg = LibraryMsg;
    type State = LibraryState;
    type Arguments = LibraryArgs;

    async fn pre_start(&self, myself: ActorRef<LibraryMsg>, args: LibraryArgs) -> Result<LibraryState, ActorProcessingErr> {
        let records = args.store.reader().folders()?;
        let mut state = LibraryState {
            args,
            myself: myself.clone(),
            folders: Vec::new(),
            dirty: HashSet::new(),
            first_dirty: None,
            last_event: Instant::now(),
            flush_scheduled: false,
            unsettled: HashMap::new(),
        };
        for record in records {
            let path = mindory_proto::path_text::decode(&record.path);
            let (mode, watcher) = watch(&path, &state.args);
            state.folders.push(Watched {
                path,
                mode,
                _watcher: watcher,
                last_scan: None,
            });
        }
        state.publish();
        // Start-up reconciliation runs as the first message, so the daemon
        // serves while it walks.
        let _ = myself.cast(LibraryMsg::Sweep);
        myself.send_interval(state.args.config.poll_interval, || LibraryMsg::Poll);
        myself.send_interval(state.args.config.sweep_interval, || LibraryMsg::Sweep);
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<LibraryMsg>, msg: LibraryMsg, state: &mut LibraryState) -> Result<(), ActorProcessingErr> {
        match msg {
            LibraryMsg::AddFolder { path, reply } => {
                let _ = reply.send(state.add_folder(&path).await);
            }
            LibraryMsg::RemoveFolder { path, reply } => {
                let _ = reply.send(state.remove_folder(&path).await);
            }
            LibraryMsg::Changed(paths) => {
                let now = Instant::now();
                for path in paths {
                    if state.folders.iter().any(|w| path.starts_with(&w.path)) && relevant(&path) {
                        state.dirty.insert(path);
                    }
                }
                if !state.dirty.is_empty() {
                    state.last_event = now;
                    state.first_dirty.get_or_insert(now);
                    if !state.flush_scheduled {
                        state.flush_scheduled = true;
                        myself.send_after(state.args.config.debounce, || LibraryMsg::Flush);
                    }
                }
            }
            LibraryMsg::WatchFailed { folder, reason } => {
                if let Some(w) = state.folders.iter_mut().find(|w| w.path == folder) {
                    tracing::warn!(folder = %folder.display(), %reason, "watching failed; polling this folder instead");
                    w.mode = WatchMode::Polling(format!("events failed: {reason}"));
                    w._watcher = None;
                }
                state.publish();
            }
            LibraryMsg::Flush => {
                state.flush_scheduled = false;
                let quiet = state.last_event.elapsed() >= state.args.config.debounce;
                let overdue = state.first_dirty.is_some_and(|t| t.elapsed() >= MAX_DEBOUNCE);
                if !quiet && !overdue {
                    state.flush_scheduled = true;
                    myself.send_after(state.args.config.debounce, || LibraryMsg::Flush);
                    return Ok(());
                }
                let scopes: Vec<PathBuf> = state.dirty.drain().collect();
                state.first_dirty = None;
                state.reconcile(scopes, None).await;
            }
            LibraryMsg::Poll => {
                let polled: Vec<PathBuf> = state
                    .folders
                    .iter()
                    .filter(|w| matches!(w.mode, WatchMode::Polling(_)))
                    .map(|w| w.path.clone())
                    .collect();
                if !polled.is_empty() {
                    state.reconcile(polled, None).await;
                }
            }
            LibraryMsg::Sweep => {
                let all: Vec<PathBuf> = state.folders.iter().map(|w| w.path.clone()).collect();
                for folder in all {
                    state.scan_folder(&folder).await;
                }
            }
        }
        Ok(())
    }
}

/// Events on ignored names (editor swap files, partial downloads) are noise;
/// anything else may be a book or a directory holding books.
fn relevant(path: &Path) -> bool {
    path.file_name().is_none_or(|n| !files::ignored_name(&n.to_string_lossy()))
}

/// File systems whose changes made on other machines inotify never reports.
fn network_fs(path: &Path) -> Option<&'static str> {
    let stat = nix::sys::statfs::statfs(path).ok()?;
    let magic = stat.filesystem_type().0 as u64;
    match magic {
        0x6969 => Some("NFS"),
        0x517B => Some("SMB"),
        0xFF53_4D42 => Some("CIFS"),
        0xFE53_4D42 => Some("SMB2"),
        0x0102_1997 => Some("9P"),
        0x6B41_4653 => Some("AFS"),
        0x7372_6F6F => Some("sshfs"),
        _ => None,
    }
}

/// Sets up how `folder` is followed: inotify when possible, else polling.
fn watch(folder: &Path, args: &LibraryArgs) -> (WatchMode, Option<notify::RecommendedWatcher>) {
    use notify::Watcher;
    if args.config.force_polling {
        return (
            WatchMode::Polling("polling requested (MINDORY_WATCH=poll or --watch poll)".into()),
            None,
        );
    }
    if let Some(fs) = network_fs(folder) {
        return (
            WatchMode::Polling(format!("{fs} network file system: inotify misses remote changes")),
            None,
        );
    }
    let slot = args.slot.clone();
    let folder_owned = folder.to_path_buf();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) => {
            use notify::event::{AccessKind, AccessMode, EventKind as K};
            let wanted = match event.kind {
                K::Create(_) | K::Modify(_) | K::Remove(_) => true,
                K::Access(AccessKind::Close(AccessMode::Write)) => true,
                // Opens and reads (ours included, while hashing) change nothing.
                K::Access(_) | K::Other | K::Any => false,
            };
            if wanted && !event.paths.is_empty() {
                slot.cast(LibraryMsg::Changed(event.paths));
            }
        }
        Err(e) => {
            slot.cast(LibraryMsg::WatchFailed {
                folder: folder_owned.clone(),
                reason: e.to_string(),
            });
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => return (WatchMode::Polling(format!("cannot start a file watcher: {e}")), None),
    };
    match watcher.watch(folder, notify::RecursiveMode::Recursive) {
        Ok(()) => (WatchMode::Events, Some(watcher)),
        Err(e) => {
            let reason = match e.kind {
                notify::ErrorKind::MaxFilesWatch => "the inotify watch limit is exhausted (raise fs.inotify.max_user_watches)".to_string(),
                _ => format!("cannot watch: {e}"),
            };
            tracing::warn!(folder = %folder.display(), %reason, "polling this folder instead");
            (WatchMode::Polling(reason), None)
        }
    }
}

impl LibraryState {
    /// Publishes the folders for `LibraryHandle::folders`.
    fn publish(&self) {
        *self.args.view.write() = self
            .folders
            .iter()
            .map(|w| FolderInfo {
                path: mindory_proto::path_text::encode(&w.path),
                mode: w.mode.clone(),
                last_scan: w.last_scan.clone(),
            })
            .collect();
    }

    async fn add_folder(&mut self, raw: &str) -> Result<ScanReport, LibraryError> {
        let path = std::fs::canonicalize(mindory_proto::path_text::decode(raw)).map_err(|e| LibraryError::Unreadable {
            path: mindory_proto::path_text::display(raw),
            reason: e.to_string(),
        })?;
        if !path.is_dir() {
            return Err(LibraryError::NotADirectory(path.display().to_string()));
        }
        self.args.store.set_folder(mindory_proto::path_text::encode(&path), true).await?;
        if !self.folders.iter().any(|w| w.path == path) {
            let (mode, watcher) = watch(&path, &self.args);
            tracing::info!(folder = %path.display(), ?mode, "library folder added");
            self.folders.push(Watched {
                path: path.clone(),
                mode,
                _watcher: watcher,
                last_scan: None,
            });
            self.publish();
        }
        let mut report = self.scan_folder(&path).await;
        // The user is waiting for this answer: files still being written when
        // the scan saw them are looked at again until they settle (bounded),
        // so the report (and `folders add --wait`) covers them too.
        let deadline = Instant::now() + ADD_SETTLE_WAIT;
        while report.unsettled > 0 && Instant::now() < deadline {
            tokio::time::sleep(scan::SETTLE / 2).await;
            let scopes: Vec<PathBuf> = self.unsettled.keys().filter(|p| p.starts_with(&path)).cloned().collect();
            if scopes.is_empty() {
                break;
            }
            let more = self.reconcile(scopes, None).await;
            report.queued += more.queued;
            report.queued_ids.extend(more.queued_ids);
            report.unchanged += more.unchanged;
            report.moved += more.moved;
            report.removed += more.removed;
            report.unsettled = more.unsettled;
        }
        if let Some(w) = self.folders.iter_mut().find(|w| w.path == path) {
            w.last_scan = Some(report.clone());
        }
        self.publish();
        Ok(report)
    }

    async fn remove_folder(&mut self, raw: &str) -> Result<u64, LibraryError> {
        let path = std::fs::canonicalize(mindory_proto::path_text::decode(raw)).unwrap_or_else(|_| mindory_proto::path_text::decode(raw));
        let key = mindory_proto::path_text::encode(&path);
        if !self.args.store.set_folder(key.clone(), false).await? {
            return Err(LibraryError::NotAFolder(key));
        }
        self.folders.retain(|w| w.path != path);
        self.publish();
        // Its books go too, unless another library folder still holds them.
        let books = self.args.store.reader().books_in(std::slice::from_ref(&path))?;
        let mut removed = 0;
        for book in books {
            let book_path = mindory_proto::path_text::decode(&book.path);
            let still_held = self.folders.iter().any(|w| book_path.starts_with(&w.path));
            if !still_held {
                self.args.ingest.remove_book(book.id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A full scan of one folder, announced with scan events.
    async fn scan_folder(&mut self, folder: &Path) -> ScanReport {
        let name = mindory_proto::path_text::encode(folder);
        self.args.events.publish(EventKind::ScanStarted { folder: name.clone() });
        let report = self.reconcile(vec![folder.to_path_buf()], Some(folder)).await;
        self.args.events.publish(EventKind::ScanFinished {
            folder: name,
            report: report.clone(),
        });
        if let Some(w) = self.folders.iter_mut().find(|w| w.path == folder) {
            w.last_scan = Some(report.clone());
        }
        self.publish();
        report
    }

    /// Reconciles `scopes` with the store and applies the plan.
    async fn reconcile(&mut self, scopes: Vec<PathBuf>, folder: Option<&Path>) -> ScanReport {
        let started = Instant::now();
        let reader = self.args.store.reader().clone();
        let before = self.unsettled.clone();
        let scopes_for_plan = scopes.clone();
        let planned = tokio::task::spawn_blocking(move || {
            // Only the books under these scopes: a range of the paths
            // table each, so a burst of events in one folder does not read
            // the whole library.
            let books = reader.books_in(&scopes_for_plan)?;
            Ok::<_, StoreError>(scan::plan(&scopes_for_plan, &books, &before, SystemTime::now()))
        })
        .await;
        let plan = match planned {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the store to reconcile");
                return ScanReport::default();
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile task failed");
                return ScanReport::default();
            }
        };
        // Forget unsettled files in this scope; remember the ones still unsettled.
        self.unsettled.retain(|p, _| !scopes.iter().any(|s| p.starts_with(s)));
        self.unsettled.extend(plan.unsettled.iter().cloned());
        let mut report = ScanReport {
            files: plan.files as u64,
            unchanged: plan.unchanged as u64,
            unsettled: plan.unsettled.len() as u64,
            ..ScanReport::default()
        };
        for (path, reason) in &plan.unreadable {
            tracing::warn!(path = %path.display(), %reason, "cannot read a library file; will retry at the next scan");
        }
        for id in &plan.removals {
            match self.args.ingest.remove_book(*id).await {
                Ok(_) => report.removed += 1,
                Err(e) => tracing::error!(book_id = id, error = %e, "cannot remove a vanished book"),
            }
        }
        for (id, path, state) in &plan.moves {
            match self.args.ingest.move_book(*id, path, state).await {
                Ok(()) => report.moved += 1,
                Err(e) => tracing::error!(book_id = id, error = %e, "cannot record a move"),
            }
        }
        if !plan.queue.is_empty() {
            match self.args.ingest.queue_files(plan.queue, false).await {
                Ok(results) => {
                    for r in results {
                        if let crate::ingest::AddResult::Queued { book_id, .. } = r {
                            report.queued += 1;
                            report.queued_ids.push(book_id);
                        } else {
                            report.unchanged += 1;
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot queue changed files"),
            }
        }
        if !self.unsettled.is_empty() && !self.flush_scheduled {
            // Files still being written: look again when they may have settled.
            self.dirty.extend(self.unsettled.keys().cloned());
            self.first_dirty = Some(Instant::now());
            self.flush_scheduled = true;
            self.myself.send_after(scan::SETTLE / 2, || LibraryMsg::Flush);
        }
        report.took_ms = started.elapsed().as_millis() as u64;
        if folder.is_some() || report.queued + report.moved + report.removed > 0 {
            tracing::info!(
                scope = ?folder.map(Path::display).map(|d| d.to_string()),
                files = report.files,
                unchanged = report.unchanged,
                queued = report.queued,
                moved = report.moved,
                removed = report.removed,
                ms = report.took_ms,
                "library reconciled"
            );
        }
        report
    }
}

/// Cloneable handle to the library actor.
#[derive(Clone)]
pub struct LibraryHandle {
    actor: Slot<LibraryMsg>,
    view: FolderView,
}

impl LibraryHandle {
    /// Starts the library actor under `supervisor`: its watchers, and the
    /// start-up reconciliation, which runs as its first message while the
    /// daemon already serves. The folder view outlives restarts.
    pub(crate) async fn start(
        supervisor: &SupervisorHandle,
        store: StoreHandle,
        ingest: IngestHandle,
        events: EventBus,
        config: WatchConfig,
    ) -> Result<Self, String> {
        let slot = Slot::empty();
        let view = FolderView::default();
        let args = LibraryArgs {
            store,
            ingest,
            events,
            config,
            slot: slot.clone(),
            view: view.clone(),
        };
        supervisor.spawn_into("library", LibraryActor, args, slot.clone()).await?;
        Ok(LibraryHandle::new(slot, view))
    }

    pub(crate) fn new(actor: Slot<LibraryMsg>, view: FolderView) -> Self {
        LibraryHandle { actor, view }
    }

    /// Adds a folder (persisted), starts following it and scans it once.
    pub async fn add_folder(&self, path: String) -> Result<ScanReport, LibraryError> {
        self.actor
            .call(|reply| LibraryMsg::AddFolder { path, reply })
            .await
            .map_err(LibraryError::Unavailable)?
    }

    /// Stops following a folder and removes its books; returns how many.
    pub async fn remove_folder(&self, path: String) -> Result<u64, LibraryError> {
        self.actor
            .call(|reply| LibraryMsg::RemoveFolder { path, reply })
            .await
            .map_err(LibraryError::Unavailable)?
    }

    /// The folders and how each is followed.
    pub async fn folders(&self) -> Vec<FolderInfo> {
        self.view.read().clone()
    }

    /// Stops the watchers (first step of shutdown: no new jobs from disk).
    pub(crate) fn stop(&self) {
        if let Some(actor) = self.actor.get() {
            actor.stop(Some("shutdown".into()));
        }
    }
}
