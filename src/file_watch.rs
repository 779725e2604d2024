//! Watching files that get replaced on disk, for the config and the TLS certificate: the
//! directories holding them are watched (editors and secret mounts rename over a file, which a
//! watch on the file itself would miss), events are kept only for the files' names or
//! Kubernetes' `..data` symlink swap, and reads are ignored (reloading opens the files).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Writers often change a file in several steps (or the certificate, then the key): changes
/// closer together than this are taken as one.
const SETTLE: Duration = Duration::from_millis(200);

/// Kubernetes swaps a mounted ConfigMap or Secret by re-pointing this symlink.
const K8S_DATA_LINK: &str = "..data";

/// A running watch; dropping it stops the events.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatch")
    }
}

/// Watches `files`; each change to one of them puts a token on `changed` (one pending token is
/// enough: whoever takes it reads the files anew).
pub fn watch(files: &[&Path], changed: mpsc::Sender<()>) -> notify::Result<FileWatch> {
    let names: Vec<OsString> = files.iter().map(|f| file_name(f)).collect();
    let handler = move |event: notify::Result<Event>| {
        if event.is_ok_and(|event| concerns(&event, &names)) {
            let _ = changed.try_send(());
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    for dir in dirs_of(files) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    }
    Ok(FileWatch { _watcher: watcher })
}

/// After a change, waits until the files have been quiet for [`SETTLE`] (at most ten times
/// that, so a file rewritten without pause still reloads); `false` once the watch is gone.
pub async fn settle(changes: &mut mpsc::Receiver<()>) -> bool {
    let give_up = Instant::now() + SETTLE * 10;
    loop {
        match timeout(SETTLE, changes.recv()).await {
            Ok(Some(())) if Instant::now() < give_up => continue,
            Ok(None) => return false,
            _ => return true,
        }
    }
}

/// The directories holding `files`, each once.
fn dirs_of(files: &[&Path]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|file| match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.dedup();
    dirs
}

fn file_name(path: &Path) -> OsString {
    path.file_name().unwrap_or_default().to_os_string()
}

/// Whether `event` may have changed one of the files named `names`.
fn concerns(event: &Event, names: &[OsString]) -> bool {
    let writes = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Access(_) => false,
        _ => true,
    };
    writes
        && event.paths.iter().any(|path| {
            path.file_name()
                .is_some_and(|name| name == K8S_DATA_LINK || names.iter().any(|n| n == name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::CreateKind;

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    fn names() -> Vec<OsString> {
        vec!["tls.crt".into(), "tls.key".into()]
    }

    #[test]
    fn a_write_to_a_watched_file_concerns_the_watch() {
        let written = event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/certs/tls.crt",
        );
        assert!(concerns(&written, &names()));
        let created = event(EventKind::Create(CreateKind::File), "/certs/tls.key");
        assert!(concerns(&created, &names()));
    }

    #[test]
    fn reading_the_files_does_not_concern_the_watch() {
        let opened = event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/certs/tls.crt",
        );
        assert!(!concerns(&opened, &names()));
    }

    #[test]
    fn other_files_in_the_directory_do_not_concern_the_watch() {
        let log = event(EventKind::Modify(ModifyKind::Any), "/certs/stderr.log");
        assert!(!concerns(&log, &names()));
    }

    #[test]
    fn a_kubernetes_secret_swap_concerns_the_watch() {
        let swapped = event(EventKind::Create(CreateKind::Any), "/certs/..data");
        assert!(concerns(&swapped, &names()));
    }

    #[test]
    fn files_in_one_directory_are_watched_once() {
        let same = [Path::new("/certs/tls.crt"), Path::new("/certs/tls.key")];
        assert_eq!(dirs_of(&same), vec![PathBuf::from("/certs")]);
        let bare = [Path::new("tls.crt"), Path::new("keys/tls.key")];
        assert_eq!(
            dirs_of(&bare),
            vec![PathBuf::from("."), PathBuf::from("keys")]
        );
    }
}
