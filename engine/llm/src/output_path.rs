//! Path confinement: an LLM step writes (and reads context) only inside the project root.
//!
//! In: the project root and the output path as written (after placeholders). Out: an absolute
//! path under the canonical root, or an error saying why not. Refused: absolute paths, paths
//! whose `..` climb above the root, and paths that leave the root through a symlink — the
//! deepest ancestor that exists is canonicalized and must still be under the root. A dangling
//! symlink on the way is refused too, since where it leads cannot be checked.

use std::path::{Component, Path, PathBuf};

use super::Error;

/// Where `output` lands under `root`, or why it may not be written; `task` names the task.
pub fn confine_output(task: &str, root: &Path, output: &str) -> Result<PathBuf, Error> {
    let refuse = |reason: String| Error::OutputOutsideProject {
        task: task.to_owned(),
        path: output.to_owned(),
        reason,
        root: root.display().to_string(),
    };
    let target = confine(root, output).map_err(refuse)?;
    if std::fs::metadata(&target)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return Err(refuse("it is a directory".to_owned()));
    }
    Ok(target)
}

/// `path` (relative, as written) resolved under `root`, or the reason it leaves the project:
/// the check shared by outputs and context files.
pub(crate) fn confine(root: &Path, path: &str) -> Result<PathBuf, String> {
    if path.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    let written = Path::new(path);
    if written.is_absolute() || written.has_root() {
        return Err("it is an absolute path".to_owned());
    }
    let mut relative = PathBuf::new();
    for component in written.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !relative.pop() {
                    return Err("its `..` climbs above the project root".to_owned());
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("it is an absolute path".to_owned());
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err("it names the project root itself".to_owned());
    }
    let root = root
        .canonicalize()
        .map_err(|_| "the project root cannot be resolved".to_owned())?;
    let target = root.join(&relative);
    // Walk up to the deepest ancestor that exists (a symlink counts, dangling or not).
    let mut existing = target.as_path();
    while std::fs::symlink_metadata(existing).is_err() {
        existing = match existing.parent() {
            Some(parent) => parent,
            None => return Err("no part of it exists".to_owned()),
        };
    }
    let resolved = existing.canonicalize().map_err(|_| {
        format!(
            "`{}` is a dangling symlink",
            display_relative(&root, existing)
        )
    })?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "`{}` leads to `{}` through a symlink",
            display_relative(&root, existing),
            resolved.display()
        ));
    }
    Ok(target)
}

fn display_relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<PathBuf, Error>) -> String {
        match result {
            Err(Error::OutputOutsideProject { reason, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_and_nested_paths_are_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(
            confine_output("t", dir.path(), "out.py").unwrap(),
            root.join("out.py")
        );
        assert_eq!(
            confine_output("t", dir.path(), "tests/gen/test_a.py").unwrap(),
            root.join("tests/gen/test_a.py")
        );
        assert_eq!(
            confine_output("t", dir.path(), "./a/../b.py").unwrap(),
            root.join("b.py")
        );
    }

    #[test]
    fn escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            reason(confine_output("t", dir.path(), "../x")),
            "its `..` climbs above the project root"
        );
        assert_eq!(
            reason(confine_output("t", dir.path(), "a/../../x")),
            "its `..` climbs above the project root"
        );
        assert_eq!(
            reason(confine_output("t", dir.path(), "/abs/x.py")),
            "it is an absolute path"
        );
        assert_eq!(reason(confine_output("t", dir.path(), "")), "it is empty");
        assert_eq!(
            reason(confine_output("t", dir.path(), ".")),
            "it names the project root itself"
        );
        let err = confine_output("gen", dir.path(), "../x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("output `../x` of task `gen` is outside the project"),
            "{err}"
        );
    }

    #[test]
    fn symlink_escapes_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let why = reason(confine_output("t", dir.path(), "link/new/file.py"));
        assert!(why.starts_with("`link` leads to `"), "{why}");
        assert!(why.ends_with("` through a symlink"), "{why}");
        std::os::unix::fs::symlink(outside.path().join("f.py"), dir.path().join("file-link.py"))
            .unwrap();
        let dangling = reason(confine_output("t", dir.path(), "file-link.py"));
        assert_eq!(dangling, "`file-link.py` is a dangling symlink");
        // A symlink that stays inside the project is fine.
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("inside")).unwrap();
        assert!(confine_output("t", dir.path(), "inside/x.py").is_ok());
    }
}
