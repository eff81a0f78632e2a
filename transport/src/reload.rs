//! The token file, followed: a rotated Kubernetes Secret (the kubelet swaps
//! the mounted file's symlink) or an edited file takes effect without a
//! restart. The file's identity (inode, size, modification time) is looked
//! at when a request arrives, at most every [`CHECK_EVERY`]; a new file that
//! does not parse is refused with its line, logged, and the tokens in force
//! stay — a bad edit locks nobody out.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime},
};

use super::tokens::{TokenFileError, TokenTable};

/// How often the file is looked at, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// What tells one version of the file from the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

#[derive(Debug)]
struct Checked {
    at: Instant,
    stamp: Option<Stamp>,
}

/// The tokens in force, and the file they came from.
#[derive(Debug)]
pub struct ReloadingTokens {
    path: PathBuf,
    every: Duration,
    table: RwLock<Arc<TokenTable>>,
    checked: Mutex<Checked>,
}

impl ReloadingTokens {
    /// Reads the file; a bad file at start is an error (nothing to keep).
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        Self::load_checking_every(path, CHECK_EVERY)
    }

    pub fn load_checking_every(path: &Path, every: Duration) -> Result<Self, TokenFileError> {
        let before = stamp(path);
        let table = TokenTable::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            every,
            table: RwLock::new(Arc::new(table)),
            checked: Mutex::new(Checked {
                at: Instant::now(),
                stamp: before,
            }),
        })
    }

    /// The tokens in force, after reloading the file if it changed.
    pub fn current(&self) -> Arc<TokenTable> {
        self.reload_if_changed();
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reload_if_changed(&self) {
        // One request looks; the others go on with the tokens in force.
        let Ok(mut checked) = self.checked.try_lock() else {
            return;
        };
        if checked.at.elapsed() < self.every {
            return;
        }
        checked.at = Instant::now();
        let now = stamp(&self.path);
        if now == checked.stamp {
            return;
        }
        checked.stamp = now;
        match TokenTable::load(&self.path) {
            Ok(table) => {
                *self.table.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
                tracing::info!("token file {} reloaded", self.path.display());
            }
            Err(e) => tracing::warn!("{e}; the tokens in force stay"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Request;

    use super::*;
    use crate::Caller;

    fn request(token: &str) -> Request<()> {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }

    #[test]
    fn a_rotated_file_takes_effect_and_a_bad_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "node-a aaaaaaaaaaaaaaaaaaaa\n").unwrap();
        let tokens = ReloadingTokens::load_checking_every(&path, Duration::ZERO).unwrap();
        let old = request("aaaaaaaaaaaaaaaaaaaa");
        let new = request("bbbbbbbbbbbbbbbbbbbb");
        assert_eq!(
            tokens.current().caller(&old).unwrap(),
            Caller::Node("node-a".into())
        );
        assert!(tokens.current().caller(&new).is_err());
        // Rotated the way the kubelet does it: a new file renamed over.
        let next = dir.path().join("tokens.new");
        std::fs::write(&next, "node-a bbbbbbbbbbbbbbbbbbbb\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(
            tokens.current().caller(&old).is_err(),
            "the old token still works"
        );
        assert_eq!(
            tokens.current().caller(&new).unwrap(),
            Caller::Node("node-a".into())
        );
        // A bad edit: refused, the tokens in force stay.
        std::fs::write(&next, "node-a short\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(tokens.current().caller(&new).is_ok());
        // A deleted file: the same.
        std::fs::remove_file(&path).unwrap();
        assert!(tokens.current().caller(&new).is_ok());
    }
}
