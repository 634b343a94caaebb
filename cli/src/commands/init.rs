//! `clab init`: write a working project from a template, never overwriting a file (without
//! `--force`), appending to an existing `.gitignore` instead of replacing it.
//!
//! Templates live in `cli/templates/NAME/` and are compiled into the binary. `{{name}}` and
//! `{{module}}` are replaced in contents and paths; every other `{{…}}` is a tasks.kdl
//! placeholder and is written unchanged.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::{
    args::Template,
    exit::{Done, Failure},
};

/// (template, path, contents) of every template file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "blank",
        ".gitignore",
        include_str!("../../templates/blank/.gitignore"),
    ),
    (
        "blank",
        "tasks.kdl",
        include_str!("../../templates/blank/tasks.kdl"),
    ),
    (
        "python-uv",
        ".cursor/rules/python-style.mdc",
        include_str!("../../templates/python-uv/.cursor/rules/python-style.mdc"),
    ),
    (
        "python-uv",
        ".gitignore",
        include_str!("../../templates/python-uv/.gitignore"),
    ),
    (
        "python-uv",
        "README.md",
        include_str!("../../templates/python-uv/README.md"),
    ),
    (
        "python-uv",
        "prompts/gen-tests.md",
        include_str!("../../templates/python-uv/prompts/gen-tests.md"),
    ),
    (
        "python-uv",
        "pyproject.toml",
        include_str!("../../templates/python-uv/pyproject.toml"),
    ),
    (
        "python-uv",
        "src/{{module}}/__init__.py",
        include_str!("../../templates/python-uv/src/{{module}}/__init__.py"),
    ),
    (
        "python-uv",
        "src/{{module}}/core.py",
        include_str!("../../templates/python-uv/src/{{module}}/core.py"),
    ),
    (
        "python-uv",
        "tasks.kdl",
        include_str!("../../templates/python-uv/tasks.kdl"),
    ),
    (
        "python-uv",
        "tests/test_core.py",
        include_str!("../../templates/python-uv/tests/test_core.py"),
    ),
    (
        "rust",
        ".config/nextest.toml",
        include_str!("../../templates/rust/.config/nextest.toml"),
    ),
    (
        "rust",
        ".gitignore",
        include_str!("../../templates/rust/.gitignore"),
    ),
    (
        "rust",
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    (
        "rust",
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    (
        "rust",
        "tasks.kdl",
        include_str!("../../templates/rust/tasks.kdl"),
    ),
];

/// Write `template` into `dir`.
pub(super) fn init(
    dir: &Path,
    template: Template,
    name: Option<&str>,
    force: bool,
) -> Result<Done, Failure> {
    let template_name = match template {
        Template::PythonUv => "python-uv",
        Template::Rust => "rust",
        Template::Blank => "blank",
    };
    let name = match name {
        Some(name) => name.to_owned(),
        None => std::path::absolute(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "project".to_owned()),
    };
    let module = module_name(&name);
    let fill = |text: &str| {
        text.replace("{{name}}", &name)
            .replace("{{module}}", &module)
    };
    let files: Vec<(PathBuf, String)> = FILES
        .iter()
        .filter(|(t, _, _)| *t == template_name)
        .map(|(_, path, contents)| (dir.join(fill(path)), fill(contents)))
        .collect();
    let existing: Vec<String> = files
        .iter()
        .filter(|(path, _)| path.exists() && !path.ends_with(".gitignore"))
        .map(|(path, _)| path.strip_prefix(dir).unwrap_or(path).display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(Failure::Usage(format!(
            "`clab init` would overwrite {}; use --force to replace them",
            existing.join(", ")
        )));
    }
    let mut out = std::io::stdout().lock();
    for (path, contents) in files {
        let io_error = |source| Failure::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let contents = if path.ends_with(".gitignore") && path.exists() {
            let current = std::fs::read_to_string(&path).map_err(io_error)?;
            merge_gitignore(&current, &contents)
        } else {
            contents
        };
        clab_model::atomic_write::write_atomic(&path, contents.as_bytes()).map_err(io_error)?;
        writeln!(
            out,
            "wrote {}",
            path.strip_prefix(dir).unwrap_or(&path).display()
        )?;
    }
    writeln!(
        out,
        "next: `clab run` (runs the `default` task), then `clab list` for the others"
    )?;
    Ok(Done::Success)
}

/// The name as a Python module: lowercase, anything but `a-z0-9_` becomes `_`.
fn module_name(name: &str) -> String {
    let mut module: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if module.starts_with(|c: char| c.is_ascii_digit()) || module.is_empty() {
        module.insert(0, '_');
    }
    module
}

/// `current` plus the lines of `template` it lacks.
fn merge_gitignore(current: &str, template: &str) -> String {
    let have: Vec<&str> = current.lines().map(str::trim).collect();
    let mut merged = current.to_owned();
    if !merged.is_empty() && !merged.ends_with('\n') {
        merged.push('\n');
    }
    for line in template.lines() {
        if !line.trim().is_empty() && !line.starts_with('#') && !have.contains(&line.trim()) {
            merged.push_str(line);
            merged.push('\n');
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_valid_identifiers() {
        assert_eq!(module_name("Demo-App"), "demo_app");
        assert_eq!(module_name("3d"), "_3d");
    }

    #[test]
    fn gitignore_lines_are_appended_once() {
        assert_eq!(
            merge_gitignore("target\n.clab/", ".clab/\nbuild/\n"),
            "target\n.clab/\nbuild/\n"
        );
    }
}
