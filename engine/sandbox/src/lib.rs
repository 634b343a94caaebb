//! A sandbox for commands clab should not trust: model-written code in an LLM step's check,
//! and any task that asks for one (`sandbox #true`).
//!
//! # Purpose
//!
//! An LLM step's `check` runs code a model wrote. Inside the sandbox it has no network, may
//! write only where the step writes anyway (its output, a private temp directory, the tool
//! caches the task names), reads everything else, and sees a reduced environment — so a
//! generated test that phones home, deletes `~/.ssh` or reads `OPENAI_API_KEY` fails instead.
//!
//! # In
//!
//! A [`Policy`]: the [`Mode`] (`off`, best effort, `required`), the paths the command may
//! write, and the environment it gets (made with [`reduced_env`]).
//!
//! # Out
//!
//! A [`Prepared`] sandbox, made in the parent before the command is spawned (the Landlock
//! ruleset built, the private temp directory created), which [`Prepared::install`] puts on a
//! [`std::process::Command`]: the environment replaced, and a `pre_exec` step that, in the
//! child, enters a new user and network namespace (only loopback, brought up) and restricts
//! the process with Landlock before `exec`. What the kernel lacks is reported once by
//! [`Support::warning`], or is an error in `required` mode.
//!
//! # Invariants
//!
//! - Nothing allocates or locks in the child between `fork` and `exec`: every path, map and
//!   ruleset is made in the parent; the child only issues system calls.
//! - Landlock handles every write access (file writes, truncation, creating and removing
//!   files, directories, links and devices, moving files between directories); reads and
//!   execution are allowed everywhere. A rule on a regular file grants writing it only.
//! - Without user namespaces the network is cut with Landlock instead (TCP bind and connect
//!   denied, ABI 4 and later), and the [`Support`] says so.
//! - Depends on no other clab crate.

use std::{
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    sync::OnceLock,
};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};

/// Whether and how strictly to sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No sandbox (`sandbox #false`).
    Off,
    /// Sandbox with what the kernel offers; what it lacks is one warning (`sandbox #true`, and
    /// the default for LLM checks).
    #[default]
    BestEffort,
    /// Sandbox fully or fail (`sandbox "required"`).
    Required,
}

/// The variables a sandboxed command keeps from clab's environment, beside what its task
/// declares (`env`, `dotenv`, `env-inputs`): enough to find programs and a locale, nothing
/// that carries a credential. `TMPDIR`, `TMP` and `TEMP` are set to the private temp
/// directory, and `PYTHONPYCACHEPREFIX` below it unless the task sets it.
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TZ",
    "NO_COLOR",
    "SOURCE_DATE_EPOCH",
    "VIRTUAL_ENV",
];

/// Python's variable for where bytecode goes, which the sandbox points into its temp
/// directory unless the task sets it.
const PYCACHE_PREFIX: &str = "PYTHONPYCACHEPREFIX";

/// What a sandboxed command may do.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// How strictly.
    pub mode: Mode,
    /// Absolute paths it may write: files (written in place) or directories (anything below).
    /// A path that does not exist is granted through its directory, or created as a
    /// directory when it ends in `/`.
    pub writable: Vec<PathBuf>,
    /// The whole environment it gets (see [`reduced_env`]); the temp variables are added.
    pub env: Vec<(String, String)>,
}

/// The environment of a sandboxed command: the variables of [`ENV_ALLOWLIST`] that `lookup`
/// knows, then `declared` (a task's own variables, which win).
pub fn reduced_env(
    lookup: impl Fn(&str) -> Option<String>,
    declared: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ENV_ALLOWLIST
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), lookup(name)?)))
        .collect();
    for (name, value) in declared {
        env.retain(|(existing, _)| *existing != name);
        env.push((name, value));
    }
    env
}

/// A sandbox that cannot be set up.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// `required` mode on a kernel that lacks a feature.
    #[error("the sandbox is required but {missing}")]
    #[diagnostic(
        code(clab::sandbox::unsupported),
        help(
            "run on a kernel with Landlock and unprivileged user namespaces, or say `sandbox #true` to run with what this one offers"
        )
    )]
    Unsupported {
        /// What is missing.
        missing: String,
    },
    /// A writable path cannot be opened or created.
    #[error("cannot open `{path}` for the sandbox")]
    #[diagnostic(code(clab::sandbox::path))]
    Path {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Landlock ruleset cannot be built.
    #[error("cannot build the sandbox's Landlock rules: {0}")]
    #[diagnostic(code(clab::sandbox::landlock))]
    Landlock(String),
}

/// What this kernel offers, found once per process ([`Support::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// The Landlock ABI version (0: none).
    pub landlock_abi: i32,
    /// Whether a process may make its own user and network namespace.
    pub namespaces: bool,
}

impl Support {
    /// What this kernel offers (asked once; ~1 ms: one short child process).
    pub fn detect() -> Support {
        static SUPPORT: OnceLock<Support> = OnceLock::new();
        *SUPPORT.get_or_init(|| Support {
            landlock_abi: landlock_abi(),
            namespaces: namespaces_work(),
        })
    }

    /// What is missing for a full sandbox, in words; `None`: nothing.
    pub fn missing(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.landlock_abi < 1 {
            missing.push("Landlock is not enabled, so writes are not confined");
        } else if self.landlock_abi < 3 {
            missing.push("Landlock is older than ABI 3, so truncating a file is not confined");
        }
        if !self.namespaces {
            missing.push(if self.landlock_abi >= 4 {
                "user namespaces are off, so only TCP is cut from the network"
            } else {
                "user namespaces are off, so the network is not cut"
            });
        }
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// The one warning to show when a best-effort sandbox runs with less than it asked for.
    pub fn warning(&self) -> Option<String> {
        self.missing()
            .map(|missing| format!("the sandbox runs with what this kernel offers: {missing}"))
    }
}

/// A sandbox ready to put on one command: made in the parent, entered by the child.
#[derive(Debug)]
pub struct Prepared {
    env: Vec<(String, String)>,
    child: Child,
    /// The private temp directory; removed when this is dropped, after the command ends.
    temp: tempfile::TempDir,
}

/// What the child does between `fork` and `exec`, all of it made beforehand.
#[derive(Debug)]
struct Child {
    /// Enter a new user and network namespace, with these uid and gid maps.
    namespaces: Option<(Vec<u8>, Vec<u8>)>,
    /// Restrict itself with this Landlock ruleset.
    ruleset: Option<OwnedFd>,
}

impl Policy {
    /// Make the sandbox for one command, in the parent. `None` in [`Mode::Off`].
    pub fn prepare(&self) -> Result<Option<Prepared>, Error> {
        if self.mode == Mode::Off {
            return Ok(None);
        }
        let support = Support::detect();
        if self.mode == Mode::Required
            && let Some(missing) = support.missing()
        {
            return Err(Error::Unsupported { missing });
        }
        let temp = tempfile::Builder::new()
            .prefix("clab-sandbox-")
            .tempdir()
            .map_err(|source| Error::Path {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
        let mut writable = Vec::with_capacity(self.writable.len() + 1);
        for path in &self.writable {
            writable.push(writable_path(path)?);
        }
        writable.push(temp.path().to_path_buf());
        let ruleset = match support.landlock_abi {
            abi if abi >= 1 => Some(ruleset(abi, &writable, !support.namespaces)?),
            _ => None,
        };
        let namespaces = support.namespaces.then(|| {
            // SAFETY: getuid and getgid cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            (
                format!("{uid} {uid} 1").into_bytes(),
                format!("{gid} {gid} 1").into_bytes(),
            )
        });
        let mut env = self.env.clone();
        let tmp = temp.path().display().to_string();
        env.retain(|(name, _)| !matches!(name.as_str(), "TMPDIR" | "TMP" | "TEMP"));
        for name in ["TMPDIR", "TMP", "TEMP"] {
            env.push((name.to_owned(), tmp.clone()));
        }
        // Python writes bytecode beside a module it compiles (`py_compile`, imports), which
        // the sandbox refuses next to an output: into the temp directory instead.
        if !env.iter().any(|(name, _)| name == PYCACHE_PREFIX) {
            let prefix = temp.path().join("pycache").display().to_string();
            env.push((PYCACHE_PREFIX.to_owned(), prefix));
        }
        Ok(Some(Prepared {
            env,
            child: Child {
                namespaces,
                ruleset,
            },
            temp,
        }))
    }
}

impl Prepared {
    /// The private temp directory.
    pub fn temp_dir(&self) -> &Path {
        self.temp.path()
    }

    /// Put the sandbox on `command`: its environment replaced, and the child entering the
    /// namespaces and the Landlock domain before `exec`. Keep `self` until the command ends.
    pub fn install(&mut self, command: &mut std::process::Command) {
        command.env_clear();
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let namespaces = self.child.namespaces.take();
        let ruleset = self.child.ruleset.take();
        // SAFETY: the closure only issues system calls on values made before the fork (no
        // allocation, no lock), as `pre_exec` requires.
        unsafe {
            command.pre_exec(move || enter(namespaces.as_ref(), ruleset.as_ref()));
        }
    }
}

/// The path a `writable` entry grants: itself when it exists; a missing path ending in `/`
/// created as a directory; any other missing path through its directory (created), because
/// a file that does not exist yet is often written by rename, which needs the directory.
fn writable_path(path: &Path) -> Result<PathBuf, Error> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let dir = if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Path {
        path: path.display().to_string(),
        source,
    })?;
    Ok(dir.to_path_buf())
}

/// The Landlock ruleset allowing writes to `writable` only (and TCP nowhere, when `net`).
fn ruleset(abi: i32, writable: &[PathBuf], net: bool) -> Result<OwnedFd, Error> {
    let abi = ABI::from(abi);
    let fail = |e: &dyn std::fmt::Display| Error::Landlock(e.to_string());
    let write = AccessFs::from_write(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(write)
        .map_err(|e| fail(&e))?;
    if net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| fail(&e))?;
    }
    if !Scope::from_all(abi).is_empty() {
        // Signals and abstract sockets reach only processes inside the sandbox.
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| fail(&e))?;
    }
    let mut created = ruleset.create().map_err(|e| fail(&e))?;
    let file_write = write & AccessFs::from_file(abi);
    let devices = [
        Path::new("/dev/null"),
        Path::new("/dev/zero"),
        Path::new("/dev/full"),
    ];
    for path in writable.iter().map(PathBuf::as_path).chain(devices) {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            // A device missing in a container is not worth failing for.
            Err(_) if devices.contains(&path) => continue,
            Err(e) => {
                return Err(Error::Path {
                    path: path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
        };
        let access: BitFlags<AccessFs> = if path.is_dir() { write } else { file_write };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| fail(&e))?;
    }
    Option::<OwnedFd>::from(created).ok_or_else(|| Error::Landlock("no ruleset was made".into()))
}

/// In the child: enter new user and network namespaces and the Landlock domain.
fn enter(
    namespaces: Option<&(Vec<u8>, Vec<u8>)>,
    ruleset: Option<&OwnedFd>,
) -> std::io::Result<()> {
    if let Some((uid_map, gid_map)) = namespaces {
        // SAFETY: plain system calls on memory made before the fork.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET))?;
            write_proc(c"/proc/self/setgroups", b"deny")?;
            write_proc(c"/proc/self/uid_map", uid_map)?;
            write_proc(c"/proc/self/gid_map", gid_map)?;
            loopback_up()?;
        }
    }
    if let Some(fd) = ruleset {
        // SAFETY: as above; `restrict_self` needs no_new_privs first.
        unsafe {
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            check(libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0) as i32)?;
        }
    }
    Ok(())
}

fn check(result: i32) -> std::io::Result<()> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Write `bytes` to a `/proc` file in one `write`.
unsafe fn write_proc(path: &std::ffi::CStr, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: the caller's contract; the path is NUL-terminated.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if written != bytes.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Bring the new network namespace's loopback up, so the command's own servers on
/// 127.0.0.1 work (the host's do not: this is another loopback).
unsafe fn loopback_up() -> std::io::Result<()> {
    // SAFETY: the caller's contract; `ifreq` is plain data, zeroed.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(socket)?;
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let mut result = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request);
        if result == 0 {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(socket, libc::SIOCSIFFLAGS, &request);
        }
        libc::close(socket);
        check(result)
    }
}

/// The Landlock ABI version of this kernel (0: none).
fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented way to ask for the version: no attributes, size 0.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

/// Whether a child can enter its own user and network namespace (tried once).
fn namespaces_work() -> bool {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let maps = (
        format!("{uid} {uid} 1").into_bytes(),
        format!("{gid} {gid} 1").into_bytes(),
    );
    let mut probe = std::process::Command::new("/bin/sh");
    probe
        .args(["-c", "exit 0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: as in `Prepared::install`.
    unsafe {
        probe.pre_exec(move || enter(Some(&maps), None));
    }
    probe.status().is_ok_and(|status| status.success())
}

/// `~/…` in a `sandbox-writable` path, against `home`; other paths as they are.
pub fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if path == "~" => home.map_or_else(|| PathBuf::from(path), Path::to_path_buf),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn policy(writable: &[&Path]) -> Policy {
        Policy {
            mode: Mode::BestEffort,
            writable: writable.iter().map(|p| p.to_path_buf()).collect(),
            env: reduced_env(|name| std::env::var(name).ok(), []),
        }
    }

    fn run(policy: &Policy, script: &str) -> (bool, String) {
        let mut prepared = policy.prepare().unwrap().unwrap();
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        prepared.install(&mut command);
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    }

    #[test]
    fn this_machine_offers_the_full_sandbox() {
        // The CI machine and this one run a kernel with Landlock ABI 7 and user namespaces;
        // a weaker one would make the tests below prove less, so say it plainly.
        let support = Support::detect();
        assert!(support.missing().is_none(), "{:?}", support.warning());
    }

    #[test]
    fn writes_are_confined_to_the_writable_paths_and_the_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("out/");
        let other = dir.path().join("elsewhere");
        std::fs::create_dir_all(&other).unwrap();
        let policy = policy(&[&allowed]);
        let (ok, log) = run(
            &policy,
            &format!(
                "echo a > {0}/a.txt && echo t > $TMPDIR/t && cat /etc/hostname >/dev/null && echo x > /dev/null",
                allowed.display()
            ),
        );
        assert!(ok, "{log}");
        assert!(allowed.join("a.txt").exists());
        let (ok, _) = run(&policy, &format!("echo b > {}/b.txt", other.display()));
        assert!(!ok, "a write outside the writable paths must fail");
        assert!(!other.join("b.txt").exists());
    }

    #[test]
    fn the_network_is_cut_but_loopback_works_inside() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let policy = policy(&[]);
        let probe = format!(
            "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=2)'"
        );
        let (ok, _) = run(&policy, &probe);
        assert!(!ok, "the host's loopback must be out of reach");
        let (ok, log) = run(
            &policy,
            "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); c=socket.create_connection(s.getsockname()); print(\"inner ok\")'",
        );
        assert!(ok && log.contains("inner ok"), "{log}");
    }

    #[test]
    fn the_environment_is_reduced_to_the_allowlist_and_the_declared() {
        let env = reduced_env(
            |name| match name {
                "PATH" => Some("/bin".into()),
                "HOME" => Some("/home/u".into()),
                _ => None,
            },
            [
                ("PATH".to_owned(), "/task/bin".to_owned()),
                ("A".into(), "1".into()),
            ],
        );
        assert_eq!(
            env,
            [
                ("HOME".to_owned(), "/home/u".to_owned()),
                ("PATH".into(), "/task/bin".into()),
                ("A".into(), "1".into())
            ]
        );
        let mut policy = policy(&[]);
        policy.env.push(("VISIBLE".into(), "yes".into()));
        // SAFETY: a test-only variable set before the sandboxed child starts.
        unsafe { std::env::set_var("CLAB_SANDBOX_TEST_SECRET", "sk-hidden") };
        let (ok, log) = run(&policy, "env");
        assert!(ok, "{log}");
        assert!(log.contains("VISIBLE=yes"), "{log}");
        assert!(!log.contains("sk-hidden"), "{log}");
        assert!(log.contains("TMPDIR="), "{log}");
    }

    #[test]
    fn what_a_weaker_kernel_lacks_is_said_in_words() {
        let none = Support {
            landlock_abi: 0,
            namespaces: false,
        };
        assert_eq!(
            none.missing().as_deref(),
            Some(
                "Landlock is not enabled, so writes are not confined; user namespaces are off, so the network is not cut"
            )
        );
        let no_userns = Support {
            landlock_abi: 5,
            namespaces: false,
        };
        assert!(no_userns.warning().unwrap().contains("only TCP is cut"));
        let full = Support {
            landlock_abi: 7,
            namespaces: true,
        };
        assert_eq!(full.warning(), None);
    }

    #[test]
    fn a_missing_path_is_granted_through_its_directory_or_made_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reports/check.txt");
        assert_eq!(writable_path(&file).unwrap(), dir.path().join("reports"));
        assert!(dir.path().join("reports").is_dir() && !file.exists());
        let cache = dir.path().join("cache/uv/");
        assert_eq!(writable_path(&cache).unwrap(), cache);
        assert!(cache.is_dir());
        let (ok, log) = run(&policy(&[&file]), &format!("echo hi > {}", file.display()));
        assert!(ok, "{log}");
    }

    #[test]
    fn python_bytecode_goes_to_the_temp_dir_not_beside_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("gen/code.py");
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        std::fs::write(&module, "x = 1\n").unwrap();
        let (ok, log) = run(
            &policy(&[&module]),
            &format!("python3 -m py_compile {}", module.display()),
        );
        assert!(ok, "{log}");
        let beside: Vec<_> = std::fs::read_dir(dir.path().join("gen")).unwrap().collect();
        assert_eq!(beside.len(), 1, "only the module is left beside it");
    }

    #[test]
    fn off_prepares_nothing_and_home_expands() {
        let off = Policy {
            mode: Mode::Off,
            ..Policy::default()
        };
        assert!(off.prepare().unwrap().is_none());
        let home = Path::new("/home/u");
        assert_eq!(
            expand_home("~/.cache/uv", Some(home)),
            home.join(".cache/uv")
        );
        assert_eq!(expand_home("/abs", Some(home)), PathBuf::from("/abs"));
    }
}
