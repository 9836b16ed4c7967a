//! Folder mode's change feed: file-system events, coalesced, trigger a rebuild.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches `root` recursively and sends a unit on every change. The watcher stops when the
/// returned value is dropped. Opening and reading a file is not a change: the rebuild
/// itself reads every file, and counting those reads would rebuild forever. When the platform cannot watch, the caller falls back to
/// polling (the rebuild loop also re-reads the folder on a timer).
pub fn watch_folder(
    root: &Path,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), notify::Error> {
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error may hide a change (the kernel queue overflowed): rebuild to be sure.
        let changed = event.map_or(true, |event| is_change(&event.kind));
        if changed {
            // A full channel already holds a pending wake-up: that is enough.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok((watcher, rx))
}

/// Whether an event can change what the folder holds. Opening a file, reading it and
/// closing it after reading cannot; closing it after writing can. Metadata alone (the
/// access time a read updates, a mode change) is left to the periodic re-read.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// Waits for the burst that woke us to settle: until `quiet` passes with no new event, or
/// `longest` in all, so a steady stream of writes still gets rebuilds.
pub async fn settle(rx: &mut mpsc::Receiver<()>, quiet: Duration, longest: Duration) {
    let deadline = tokio::time::Instant::now() + longest;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Some(())) => continue,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_change;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, EventKind, MetadataKind, ModifyKind, RemoveKind,
    };

    #[test]
    fn reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Read)));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Remove(RemoveKind::Any)));
    }
}
