//! `--since REF`: the files changed between a git revision and the working tree.
//!
//! In: the workspace root and a revision. Out: paths relative to the root, `/`-separated,
//! sorted: what `git diff --name-only REF` lists (both sides of a rename) plus the untracked
//! files git does not ignore. Git is run as a program (`git -C ROOT …`), so its own
//! configuration, worktrees and index rules apply unchanged.

use std::{path::Path, process::Command};

use super::Error;

/// The files under `root` changed since `rev`, with untracked ones.
pub fn changed_files(root: &Path, rev: &str) -> Result<Vec<String>, Error> {
    let failed = |message: String| Error::Since {
        rev: rev.to_owned(),
        message,
    };
    if rev.starts_with('-') {
        return Err(failed("a revision does not start with `-`".to_owned()));
    }
    let git = |args: &[&str]| -> Result<String, Error> {
        let output = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .map_err(|err| failed(format!("cannot run `git`: {err}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(failed(format!(
                "`git {}` failed: {}",
                args.join(" "),
                first.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let diff = git(&[
        "diff",
        "--name-only",
        "--no-renames",
        "--relative",
        rev,
        "--",
    ])?;
    let untracked = git(&["ls-files", "--others", "--exclude-standard"])?;
    let mut files: Vec<String> = diff
        .lines()
        .chain(untracked.lines())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    }

    #[test]
    fn lists_changed_and_untracked_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a")).unwrap();
        std::fs::write(d.join("a/x.txt"), "1").unwrap();
        std::fs::write(d.join("b.txt"), "1").unwrap();
        std::fs::write(d.join(".gitignore"), "ignored\n").unwrap();
        git(d, &["init", "-q"]);
        git(d, &["add", "."]);
        git(d, &["commit", "-q", "-m", "one"]);
        assert!(changed_files(d, "HEAD").unwrap().is_empty());
        std::fs::write(d.join("a/x.txt"), "2").unwrap();
        std::fs::write(d.join("new.txt"), "").unwrap();
        std::fs::write(d.join("ignored"), "").unwrap();
        assert_eq!(changed_files(d, "HEAD").unwrap(), ["a/x.txt", "new.txt"]);
        let err = changed_files(d, "no-such-rev").unwrap_err().to_string();
        assert!(
            err.starts_with("cannot list the files changed since `no-such-rev`"),
            "{err}"
        );
        assert!(changed_files(d, "--output=x").is_err());
    }
}
