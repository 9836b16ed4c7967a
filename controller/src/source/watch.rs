//! Folder mode's change feed: file-system events, coalesced, trigger a rebuild.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches `root` recursively and sends a unit on every change. The watcher stops when the
/// returned value is dropped. When the platform cannot watch, the caller falls back to
/// polling (the rebuild loop also re-reads the folder on a timer).
pub fn watch_folder(
    root: &Path,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), notify::Error> {
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full channel already holds a pending wake-up: that is enough.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok((watcher, rx))
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
