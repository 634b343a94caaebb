//! [`StagedOutput`]: an LLM step's candidate answers, tried at the step's real output path.
//!
//! A check runs the candidate where it will live, under its real name: test runners import a
//! file by its path (pytest cannot import `.clab-1a2b.test_core.py`, and a test's relative
//! imports and `conftest.py` depend on its directory), so `{{output}}` in a check is the output
//! path itself. What this costs is that the output path briefly holds an unchecked answer; what
//! keeps that safe:
//!
//! - The file that was there before is first kept aside: hard-linked (copied where links do not
//!   work) to `.<name>.clab-XXXXXX.previous` in the same directory. The output path is never
//!   missing: each candidate is written to a temp file beside it and renamed over it.
//! - [`commit`](StagedOutput::commit) (the check passed) deletes the kept file.
//! - [`restore`](StagedOutput::restore) (no answer passed, or an error) renames the kept file
//!   back over the output in one step, or removes the candidate when there was no file before.
//!   Dropping a `StagedOutput` that was neither committed nor restored — the future dropped on
//!   an interrupt, a panic — restores it the same way.
//!
//! Only a hard kill (SIGKILL, power loss) between the two can leave a candidate at the output
//! and the kept file beside it; the kept file's name says what it is.

use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
};

use tempfile::TempPath;

use super::Error;

/// An output path whose previous file is kept aside while candidates are tried there.
#[derive(Debug)]
pub struct StagedOutput {
    task: String,
    output: PathBuf,
    /// The previous file, kept aside (`None`: there was none).
    previous: Option<TempPath>,
    /// The mode candidates get: the previous file's, else 0644.
    mode: fs::Permissions,
    /// Whether a candidate was put at the output.
    placed: bool,
    /// Committed or restored: nothing left to do on drop.
    settled: bool,
}

impl StagedOutput {
    /// Start trying candidates at `output` (an absolute path from
    /// [`super::confine_output`]) for `task`: its directory is created and the file there, if
    /// any, kept aside.
    pub fn begin(task: &str, output: &Path) -> Result<StagedOutput, Error> {
        let write_error = |source| Error::Write {
            task: task.to_owned(),
            path: output.to_owned(),
            source,
        };
        fs::create_dir_all(parent(output)).map_err(write_error)?;
        let (previous, mode) = match fs::symlink_metadata(output) {
            Ok(meta) => {
                let mode = fs::metadata(output).unwrap_or(meta).permissions();
                (Some(keep_aside(output).map_err(write_error)?), mode)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::PermissionsExt;
                (None, fs::Permissions::from_mode(0o644))
            }
            Err(err) => return Err(write_error(err)),
        };
        Ok(StagedOutput {
            task: task.to_owned(),
            output: output.to_owned(),
            previous,
            mode,
            placed: false,
            settled: false,
        })
    }

    /// Put `text` at the output path, replacing the previous candidate in one rename.
    pub fn place(&mut self, text: &str) -> Result<(), Error> {
        let write_error = |source| Error::Write {
            task: self.task.clone(),
            path: self.output.clone(),
            source,
        };
        let name = file_name(&self.output);
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{name}.clab-"))
            .suffix(".candidate")
            .tempfile_in(parent(&self.output))
            .map_err(write_error)?;
        file.write_all(text.as_bytes()).map_err(write_error)?;
        file.flush().map_err(write_error)?;
        // tempfile creates 0600; an output is an ordinary project file.
        fs::set_permissions(file.path(), self.mode.clone()).map_err(write_error)?;
        file.persist(&self.output)
            .map_err(|err| write_error(err.error))?;
        self.placed = true;
        Ok(())
    }

    /// The candidate at the output is the answer: drop the previous file.
    pub fn commit(mut self) {
        self.settled = true;
        // Dropping the kept path deletes it; a file that cannot be deleted is only litter.
        self.previous.take();
    }

    /// No candidate is kept: put the previous file back (or remove the candidate when there
    /// was none), leaving the output path as it was before [`begin`](Self::begin).
    pub fn restore(mut self) -> Result<(), Error> {
        self.settled = true;
        self.put_back()
    }

    fn put_back(&mut self) -> Result<(), Error> {
        match self.previous.take() {
            // Nothing was placed: the output is the previous file still. (Renaming a hard link
            // over its twin would do nothing and leave the link behind; dropping deletes it.)
            Some(_) if !self.placed => Ok(()),
            Some(previous) => previous.persist(&self.output).map_err(|err| {
                // Never lose the previous file: keep it on disk and say where it is.
                let kept = err.path.keep().unwrap_or_default();
                Error::Restore {
                    task: self.task.clone(),
                    path: self.output.clone(),
                    kept,
                    source: err.error,
                }
            }),
            None if self.placed => match fs::remove_file(&self.output) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(Error::Write {
                    task: self.task.clone(),
                    path: self.output.clone(),
                    source: err,
                }),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for StagedOutput {
    fn drop(&mut self) {
        if !self.settled {
            // Nobody is left to tell; `put_back` keeps the previous file on disk if it fails.
            let _ = self.put_back();
        }
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A second name for the file at `output` beside it: a hard link (the output stays in place
/// and untouched), or a copy where the file system has no links.
fn keep_aside(output: &Path) -> io::Result<TempPath> {
    let name = file_name(output);
    let prefix = format!(".{name}.clab-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".previous");
    let dir = parent(output);
    match builder.make_in(dir, |path| fs::hard_link(output, path)) {
        Ok(linked) => Ok(linked.into_temp_path()),
        Err(_) => {
            let copy = builder.tempfile_in(dir)?.into_temp_path();
            fs::copy(output, &copy)?;
            Ok(copy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_committed_candidate_replaces_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("test_a.py");
        fs::write(&output, "old\n").unwrap();
        let mut staged = StagedOutput::begin("gen", &output).unwrap();
        assert_eq!(fs::read_to_string(&output).unwrap(), "old\n");
        staged.place("first\n").unwrap();
        assert_eq!(fs::read_to_string(&output).unwrap(), "first\n");
        staged.place("second\n").unwrap();
        staged.commit();
        assert_eq!(fs::read_to_string(&output).unwrap(), "second\n");
        assert_eq!(names(dir.path()), ["test_a.py"]);
    }

    #[test]
    fn restore_puts_back_the_previous_file_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("run.sh");
        fs::write(&output, "old\n").unwrap();
        fs::set_permissions(&output, fs::Permissions::from_mode(0o755)).unwrap();
        let mut staged = StagedOutput::begin("gen", &output).unwrap();
        staged.place("candidate\n").unwrap();
        let mode = fs::metadata(&output).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "a candidate keeps the file's mode");
        staged.restore().unwrap();
        assert_eq!(fs::read_to_string(&output).unwrap(), "old\n");
        assert_eq!(names(dir.path()), ["run.sh"]);
    }

    #[test]
    fn restore_without_a_previous_file_removes_the_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("new/test_b.py");
        let mut staged = StagedOutput::begin("gen", &output).unwrap();
        staged.place("candidate\n").unwrap();
        staged.restore().unwrap();
        assert!(!output.exists());
        assert!(names(&dir.path().join("new")).is_empty());
        // Nothing placed: nothing to undo.
        StagedOutput::begin("gen", &output)
            .unwrap()
            .restore()
            .unwrap();
        assert!(!output.exists());
    }

    #[test]
    fn dropping_unsettled_restores() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.txt");
        fs::write(&output, "old\n").unwrap();
        let result = std::panic::catch_unwind(|| {
            let mut staged = StagedOutput::begin("gen", &output).unwrap();
            staged.place("candidate\n").unwrap();
            panic!("interrupted mid-check");
        });
        assert!(result.is_err());
        assert_eq!(fs::read_to_string(&output).unwrap(), "old\n");
        assert_eq!(names(dir.path()), ["out.txt"]);
    }

    #[test]
    fn a_failed_restore_keeps_the_previous_file_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.txt");
        fs::write(&output, "old\n").unwrap();
        let mut staged = StagedOutput::begin("gen", &output).unwrap();
        staged.place("candidate\n").unwrap();
        // Something turned the output path into a directory: the rename back must fail.
        fs::remove_file(&output).unwrap();
        fs::create_dir(&output).unwrap();
        fs::write(output.join("inside"), "x").unwrap();
        let err = staged.restore().unwrap_err();
        let Error::Restore { kept, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(fs::read_to_string(kept).unwrap(), "old\n");
        let kept_name = kept.file_name().unwrap().to_string_lossy().into_owned();
        let text = super::super::error::render::graphical(&err)
            .replace(&dir.path().display().to_string(), "[TEMP]")
            .replace(&kept_name, ".out.txt.clab-[RANDOM].previous");
        insta::assert_snapshot!("restore_failed", text);
    }

    #[test]
    fn the_previous_file_is_kept_aside_beside_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("test_c.py");
        fs::write(&output, "old\n").unwrap();
        let staged = StagedOutput::begin("gen", &output).unwrap();
        let listed = names(dir.path());
        assert_eq!(listed.len(), 2, "{listed:?}");
        let kept = listed.iter().find(|n| n.ends_with(".previous")).unwrap();
        assert!(kept.starts_with(".test_c.py.clab-"), "{kept}");
        assert_eq!(fs::read_to_string(dir.path().join(kept)).unwrap(), "old\n");
        drop(staged);
        assert_eq!(names(dir.path()), ["test_c.py"]);
    }
}
