//! The pid file (`--pid-file FILE`), and telling a drainpipe process from any
//! other before signalling it.
//!
//! The file is written atomically (a new file renamed over the old one), so a
//! reader never sees it half-written. It is removed at exit only if it still
//! names this process: after an upgrade or a reload the successor has written
//! its own id there and the file is its.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The pid file of this process, removed on drop if it still names it.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `path` (atomically) and owns the file.
    pub fn create(path: &Path) -> Result<PidFile, String> {
        write_atomically(path, &format!("{}\n", std::process::id()))
            .map_err(|e| format!("--pid-file: cannot write {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).ok() == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `text` to a new file next to `path`, then renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The process id a pid file names.
pub fn read(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read pid file {}: {e}", path.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            format!(
                "pid file {}: {:?} is not a process id",
                path.display(),
                text.trim()
            )
        })
}

/// `Ok` if process `pid` runs drainpipe (its executable, or the program its
/// command line started, is named `drainpipe…`); otherwise an error saying
/// what it is.
pub fn is_drainpipe(pid: i32) -> Result<(), String> {
    if pid <= 0 {
        return Err(format!("{pid} is not a process id"));
    }
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if !proc.exists() {
        return Err(format!("no process {pid}"));
    }
    let named = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().starts_with("drainpipe"))
            .unwrap_or(false)
    };
    let exe = std::fs::read_link(proc.join("exe")).ok();
    let argv0 = std::fs::read(proc.join("cmdline"))
        .ok()
        .and_then(|c| {
            c.split(|b| *b == 0)
                .next()
                .map(|a| String::from_utf8_lossy(a).into_owned())
        })
        .unwrap_or_default();
    if exe.as_deref().is_some_and(named) || named(Path::new(&argv0)) {
        return Ok(());
    }
    let what = exe
        .map(|e| e.display().to_string())
        .filter(|e| !e.is_empty())
        .or_else(|| (!argv0.is_empty()).then_some(argv0))
        .unwrap_or_else(|| "something else".into());
    Err(format!("process {pid} is not drainpipe (it runs {what})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_atomically_and_removed_only_while_ours() {
        let dir = std::env::temp_dir().join(format!("drainpipe-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.pid");
        std::fs::write(&path, "1\n").unwrap();
        let file = PidFile::create(&path).unwrap();
        assert_eq!(read(&path).unwrap(), std::process::id() as i32);
        drop(file);
        assert!(!path.exists());
        // Taken over by a successor: left alone.
        let file = PidFile::create(&path).unwrap();
        write_atomically(&path, "4242\n").unwrap();
        drop(file);
        assert_eq!(read(&path).unwrap(), 4242);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::write(&path, "abc").unwrap();
        assert!(read(&path)
            .unwrap_err()
            .contains("\"abc\" is not a process id"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tells_drainpipe_from_other_processes() {
        // This test binary is not drainpipe-named (drainpipe-HASH is, so
        // check a process that surely is not: init).
        let err = is_drainpipe(1).unwrap_err();
        assert!(err.starts_with("process 1 is not drainpipe"), "{err}");
        assert!(is_drainpipe(i32::MAX)
            .unwrap_err()
            .starts_with("no process"));
        assert!(is_drainpipe(0).is_err());
    }
}
