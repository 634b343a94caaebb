//! Running one shell command in its own process group.
//!
//! Each command is `sh -c LINE` in a new process group, so a signal reaches everything the
//! command started and nothing else. A simple command (`direct_argv`) is started without
//! the shell, which would only have looked it up and exec'd it in its own place. stdout and stderr share one pipe, so the captured log
//! keeps the order the task wrote it in. When the shell exits, whatever it left running in
//! its group is killed: a task cannot leave orphans behind. A timeout sends SIGTERM to the
//! group, a [`Stop`] SIGINT; either is followed by SIGKILL after the grace period.
//!
//! What leaves the group (`setsid`, a double fork) is found by the command's tag
//! ([`crate::process_tag`]) among clab's descendants — clab is a subreaper, so orphans stay
//! among them — and gets the same signals; when the shell has ended, it is killed. The end
//! of a command never waits on its output pipe for longer than [`PIPE_SETTLE`] and
//! [`PIPE_GIVE_UP`]: a process that holds the pipe and cannot be found makes clab stop
//! reading, never hang (issue 18: a run ignored Ctrl-C until an escaped `sleep` ended).
//! Each group is recorded ([`crate::process_record`]) and watched ([`crate::watchdog`]) for
//! the case of clab itself being killed.
//!
//! The wait is blocking, on the caller's thread, in one `poll` over the output pipe, the
//! shell's pidfd and the stop signal: the thread that sees a command end can start the next
//! one at once. (Waiting through the async runtime cost two or three thread wake-ups between
//! one command and the next — ~0.2 ms each on a machine whose cores run the commands; see
//! bench/notes.md.)

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::PathBuf,
    process::{Child, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nix::{
    fcntl::{FcntlArg, OFlag, fcntl},
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::{
    process_record::ProcessRecord,
    process_tag::{self, ProcessTag, TAG_VAR},
    task_log::TaskLog,
    watchdog::Watchdog,
};

/// How long the end of a command waits for its output pipe to close once its group is
/// killed, before it looks for processes outside the group that hold it.
pub const PIPE_SETTLE: Duration = Duration::from_millis(100);

/// How long it then waits again before it stops reading the pipe.
pub const PIPE_GIVE_UP: Duration = Duration::from_secs(2);

/// The longest line handed to `on_line` in one piece: a longer one comes in pieces, so a
/// task printing megabytes without a newline does not grow a line buffer without bound.
const MAX_LINE: usize = 64 << 10;

/// What to run.
#[derive(Clone, Debug)]
pub struct CommandSpec {
    /// The shell line.
    pub line: String,
    /// The working directory.
    pub cwd: PathBuf,
    /// Variables to set on top of the inherited environment.
    pub env: BTreeMap<String, String>,
    /// Kill the group after this long.
    pub timeout: Option<Duration>,
    /// How long to wait between the polite signal and SIGKILL.
    pub grace: Duration,
    /// Run it in this sandbox (`sandbox #true`): its environment is then the sandbox's
    /// reduced one, with `env` on top.
    pub sandbox: Option<clab_sandbox::Policy>,
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (0 is success).
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
    /// An interrupt stopped it.
    Interrupted,
}

impl Exit {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }

    /// A few words for a failure line: `exit 2`, `killed by signal 9`, `timed out after 5s`.
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(code) => format!("exit {code}"),
            Exit::Signal(signal) => format!("killed by signal {signal}"),
            Exit::TimedOut(after) => {
                format!(
                    "timed out after {}",
                    clab_model::duration::format_duration(*after)
                )
            }
            Exit::Interrupted => "interrupted".to_owned(),
        }
    }

    /// The failure of command `number` (1-based) of a task's `count`: [`describe`] alone
    /// for a task of one command, else naming the command — `command 2 of 3 `test -f x`
    /// exited 1`. A long or multi-line command is cut to its first 60 characters.
    ///
    /// [`describe`]: Self::describe
    pub fn describe_command(&self, number: usize, count: usize, line: &str) -> String {
        if count <= 1 {
            return self.describe();
        }
        let first = line.trim().lines().next().unwrap_or_default();
        let mut shown: String = first.chars().take(60).collect();
        if shown.len() < line.trim().len() {
            shown.push('…');
        }
        let how = match self {
            Exit::Code(code) => format!("exited {code}"),
            Exit::Signal(signal) => format!("was killed by signal {signal}"),
            other => other.describe(),
        };
        format!("command {number} of {count} `{shown}` {how}")
    }
}

/// A command could not be started.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot start `sh -c {line}` in `{cwd}`")]
#[diagnostic(code(clab::exec::spawn))]
pub struct SpawnError {
    /// The command line.
    pub line: String,
    /// The working directory.
    pub cwd: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// A signal that stops running commands. Raised once, it stays raised; a blocking wait sees
/// it as a readable pipe, so `poll` wakes for it (or, when no pipe could be made, checks it
/// every few milliseconds).
#[derive(Clone, Debug)]
pub struct Stop(Arc<StopPipe>);

#[derive(Debug)]
struct StopPipe {
    raised: AtomicBool,
    pipe: Option<(io::PipeReader, io::PipeWriter)>,
}

impl Stop {
    /// A signal not raised yet.
    pub fn new() -> Stop {
        Stop(Arc::new(StopPipe {
            raised: AtomicBool::new(false),
            pipe: io::pipe().ok(),
        }))
    }

    /// Raise the signal (again is harmless).
    pub fn raise(&self) {
        if !self.0.raised.swap(true, Ordering::SeqCst)
            && let Some((_, writer)) = &self.0.pipe
        {
            // One byte, never read: the pipe stays readable.
            let _ = (&*writer).write(&[1]);
        }
    }

    /// Whether it was raised.
    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::SeqCst)
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.pipe.as_ref().map(|(reader, _)| reader.as_fd())
    }
}

/// Raises a [`Stop`] from the signal handler of SIGINT and SIGTERM while it is held; see
/// [`Stop::raise_on_interrupt`].
#[derive(Debug)]
pub struct InterruptHook {
    ids: Vec<signal_hook_registry::SigId>,
    fired: Arc<AtomicBool>,
}

impl InterruptHook {
    /// Whether a signal came while it was held.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for InterruptHook {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook_registry::unregister(id);
        }
    }
}

impl Stop {
    /// Raise this signal the moment SIGINT or SIGTERM arrives, from the signal handler
    /// itself, until the hook is dropped: for a command waited for on the thread that would
    /// otherwise notice the interrupt (the async runtime's, which cannot while it waits).
    /// The runtime's own handlers still run. Without a pipe, nothing is hooked.
    pub fn raise_on_interrupt(&self) -> InterruptHook {
        let fired = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        if self.0.pipe.is_some() {
            for signal in [nix::libc::SIGINT, nix::libc::SIGTERM] {
                let (stop, fired) = (Arc::clone(&self.0), Arc::clone(&fired));
                let action = move || {
                    // Async-signal-safe: atomic stores and one write(2), nothing allocated.
                    fired.store(true, Ordering::SeqCst);
                    if !stop.raised.swap(true, Ordering::SeqCst)
                        && let Some((_, writer)) = &stop.pipe
                    {
                        let _ = nix::unistd::write(writer, &[1]);
                    }
                };
                // SAFETY: the action only stores atomics and writes one byte to a pipe,
                // both async-signal-safe; what it captures lives until it is unregistered.
                if let Ok(id) = unsafe { signal_hook_registry::register(signal, action) } {
                    ids.push(id);
                }
            }
        }
        InterruptHook { ids, fired }
    }
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

/// Whether a command was started since [`take_spawned`] last asked.
static SPAWNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a command was started since the last call: the end of a run looks for leftovers
/// only then.
pub fn take_spawned() -> bool {
    SPAWNED.swap(false, Ordering::SeqCst)
}

/// How a command ended, and what clab had to clean up after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ran {
    /// How it ended.
    pub exit: Exit,
    /// How many processes it left running outside its process group (killed when it ended).
    pub escaped: usize,
    /// A process clab could not find kept its output open after it ended; clab stopped
    /// reading, so the log may lack what that process wrote later.
    pub output_abandoned: bool,
}

/// Run `spec`, calling `on_line` for each line of output, until it exits, times out, or
/// `stop` is raised. Returns how it ended and what it printed (its end, past
/// [`crate::task_log::TAIL_BYTES`]). Blocks the calling thread throughout; `meanwhile` is
/// called once the shell has started, before waiting.
pub fn run_command(
    spec: &CommandSpec,
    on_line: impl FnMut(&str),
    stop: &Stop,
    meanwhile: impl FnOnce(),
) -> Result<(Exit, Vec<u8>), SpawnError> {
    let mut log = TaskLog::new(None);
    let ran = run_command_into(spec, &mut log, on_line, stop, meanwhile)?;
    Ok((ran.exit, log.to_bytes().unwrap_or_default()))
}

/// The program and arguments of `line` when it is a simple command that `sh -c` would only
/// look up and exec in its own place — what GNU make does to skip the shell. Starting `dash`
/// first cost ~0.7 ms of a run of `cat tasks.kdl` (hyperfine: 3.28 → 2.56 ms); `None` when
/// the line needs the shell.
///
/// A simple command here is words of letters, digits and `_ . / , : = + @ % - ^`, separated
/// by spaces: no quotes, escapes, variables, globs, redirections, pipes, lists, comments or
/// `~`. Its first word must not be an assignment nor a shell keyword or builtin: those mean
/// something else, or nothing, as programs — and the shell runs `echo`, `true` or `printf`
/// without starting a program at all, faster than `/bin/echo` starts.
pub(crate) fn direct_argv(line: &str) -> Option<Vec<&str>> {
    const SIMPLE: &[u8] = b"_./,:=+@%-^";
    if !line
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b' ' || SIMPLE.contains(&b))
    {
        return None;
    }
    let argv: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    let program = *argv.first()?;
    if program.contains('=') || SHELL_WORDS.contains(&program) {
        return None;
    }
    Some(argv)
}

/// The `PWD` that `sh` started in `cwd` would export, where it differs from the one the
/// command inherits: `sh` keeps an inherited `PWD` that names `cwd` (a path through a
/// symlink included) and otherwise sets the directory's real path.
fn shell_pwd(cwd: &std::path::Path, env: &BTreeMap<String, String>) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let inherited = env
        .get("PWD")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PWD").map(PathBuf::from));
    let same = |a: &std::path::Path, b: &std::path::Path| match (
        std::fs::metadata(a),
        std::fs::metadata(b),
    ) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    if let Some(pwd) = inherited
        && pwd.is_absolute()
        && !pwd.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        })
        && same(&pwd, cwd)
    {
        return None;
    }
    Some(std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf()))
}

/// The keywords and builtins of POSIX `sh`, `dash` and `bash` that a simple command may start
/// with (see [`direct_argv`]).
const SHELL_WORDS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "case",
    "cd",
    "chdir",
    "command",
    "compgen",
    "complete",
    "continue",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// [`run_command`], writing the output into `log`.
pub fn run_command_into(
    spec: &CommandSpec,
    log: &mut TaskLog,
    mut on_line: impl FnMut(&str),
    stop: &Stop,
    meanwhile: impl FnOnce(),
) -> Result<Ran, SpawnError> {
    let spawn_error = |source| SpawnError {
        line: spec.line.clone(),
        cwd: spec.cwd.display().to_string(),
        source,
    };
    process_tag::become_subreaper();
    Watchdog::ensure();
    SPAWNED.store(true, Ordering::SeqCst);
    let tag = ProcessTag::next();
    let (reader, writer) = io::pipe().map_err(spawn_error)?;
    let mut sandbox = match &spec.sandbox {
        Some(policy) => policy
            .prepare()
            .map_err(|err| spawn_error(io::Error::other(sandbox_error(&err))))?,
        None => None,
    };
    // A simple command runs without the shell when nothing sandboxes it (`direct_argv`).
    let direct = sandbox
        .is_none()
        .then(|| direct_argv(&spec.line))
        .flatten()
        .filter(|_| spec.cwd.is_absolute());
    let shell = || {
        let mut command = std::process::Command::new("/bin/sh");
        command.arg("-c").arg(&spec.line);
        command
    };
    // Where it runs, what it sees, where its output goes: the same for either way to start it.
    let settle = |command: &mut std::process::Command| -> Result<(), SpawnError> {
        command
            .current_dir(&spec.cwd)
            .envs(&spec.env)
            .env(TAG_VAR, tag.as_str())
            .stdin(Stdio::null())
            .stdout(writer.try_clone().map_err(spawn_error)?)
            .stderr(writer.try_clone().map_err(spawn_error)?)
            .process_group(0);
        Ok(())
    };
    let mut command = match &direct {
        Some(argv) => {
            let mut command = std::process::Command::new(argv[0]);
            command.args(&argv[1..]);
            command
        }
        None => shell(),
    };
    if let Some(sandbox) = &mut sandbox {
        sandbox.install(&mut command);
    }
    settle(&mut command)?;
    if direct.is_some()
        && let Some(pwd) = shell_pwd(&spec.cwd, &spec.env)
    {
        // Over the task's own `PWD` too, as `sh` would.
        command.env("PWD", pwd);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        // Not found, not executable, a script without `#!`: the shell says so, or runs it,
        // exactly as it would have. (Never sandboxed: `direct` is `None` then.)
        Err(_) if direct.is_some() => {
            command = shell();
            settle(&mut command)?;
            command.spawn().map_err(spawn_error)?
        }
        Err(err) => return Err(spawn_error(err)),
    };
    // Our copies of the pipe's write end must go, or the reader never sees end-of-file.
    drop(command);
    drop(writer);
    let pgid = Pid::from_raw(child.id() as i32);
    ProcessRecord::started(&tag, pgid.as_raw());
    let mut output = Output::new(reader.into(), log);
    let mut shell = Shell::new(child.id());
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    meanwhile();

    let exit = loop {
        if stop.is_raised() {
            stop_group(&mut child, &shell, pgid, &tag, Signal::SIGINT, spec.grace);
            break Exit::Interrupted;
        }
        if shell.may_have_exited()
            && let Some(status) = child.try_wait().ok().flatten()
        {
            break exit_of(status);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            stop_group(&mut child, &shell, pgid, &tag, Signal::SIGTERM, spec.grace);
            break Exit::TimedOut(spec.timeout.unwrap_or_default());
        }
        let fds = [output.fd(), shell.fd(), stop.fd()];
        let mut limit = match (shell.fd(), stop.fd()) {
            (Some(_), Some(_)) => left,
            _ => checked(left),
        };
        // The watchdog starts from the wait of a command that runs when it is due.
        if let Some(due) = Watchdog::due() {
            match due.checked_duration_since(Instant::now()) {
                Some(until) if !until.is_zero() => {
                    limit = Some(limit.map_or(until, |limit| limit.min(until)));
                }
                _ => Watchdog::start_if_due(),
            }
        }
        let ready = wait_for(&fds, limit);
        shell.exited = ready[1];
        if ready[0] {
            output.read_available(&mut on_line);
        }
    };
    // Whatever the shell left in its group goes with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    // What left the group: the orphans clab adopted (cheap to list), or — when the pipe
    // stays open — every descendant of clab with the command's tag.
    let mut closed = output.read_until(Instant::now() + PIPE_SETTLE, &mut on_line);
    let mut escaped = kill_escaped(&tag, ProcessRecord::not_running(process_tag::adopted()));
    if !closed {
        escaped += kill_escaped(&tag, process_tag::descendants());
        closed = output.read_until(Instant::now() + PIPE_GIVE_UP, &mut on_line);
    }
    output.finish(&mut on_line);
    ProcessRecord::ended(&tag);
    Ok(Ran {
        exit,
        escaped,
        output_abandoned: !closed,
    })
}

/// Kill (SIGKILL) what carries `tag` among `roots` and their descendants; how many.
fn kill_escaped(tag: &ProcessTag, roots: Vec<i32>) -> usize {
    if roots.is_empty() {
        return 0;
    }
    let pids = process_tag::subtree(roots);
    let hit = process_tag::signal_tagged(&pids, |t| t == tag.as_str(), Signal::SIGKILL, None);
    process_tag::reap(&hit, Duration::from_millis(200));
    hit.len()
}

/// The shell's pidfd, which turns readable when it exits — or, on kernels without pidfds
/// (before 5.3), nothing, and a [check](CHECK_EVERY) every few milliseconds instead.
struct Shell {
    pidfd: Option<OwnedFd>,
    /// The last `poll` saw the pidfd readable.
    exited: bool,
}

/// How often what cannot be polled for (a shell without a pidfd, a stop without a pipe) is
/// checked on.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// A wait of `left` (`None`: unbounded), cut to [`CHECK_EVERY`].
fn checked(left: Option<Duration>) -> Option<Duration> {
    Some(left.map_or(CHECK_EVERY, |left| left.min(CHECK_EVERY)))
}

impl Shell {
    fn new(pid: u32) -> Shell {
        Shell {
            pidfd: pidfd_of(pid),
            exited: false,
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// Whether asking (`waitid`) is worth a system call.
    fn may_have_exited(&self) -> bool {
        self.exited || self.pidfd.is_none()
    }

    /// Wait up to `limit` for the shell to exit.
    fn wait(&self, child: &mut Child, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let limit = match self.fd() {
                Some(_) => Some(left),
                None => checked(Some(left)),
            };
            wait_for(&[self.fd()], limit);
        }
    }
}

#[cfg(target_os = "linux")]
fn pidfd_of(pid: u32) -> Option<OwnedFd> {
    use rustix::process::{Pid, PidfdFlags, pidfd_open};
    pidfd_open(
        Pid::from_raw(i32::try_from(pid).ok()?)?,
        PidfdFlags::empty(),
    )
    .ok()
}

#[cfg(not(target_os = "linux"))]
fn pidfd_of(_: u32) -> Option<OwnedFd> {
    None
}

/// `poll` the descriptors given for readability (or hang-up) for up to `limit` (`None`: no
/// limit); which of them are ready. An interrupted or failed `poll` reports none.
fn wait_for(fds: &[Option<BorrowedFd<'_>>], limit: Option<Duration>) -> Vec<bool> {
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .flatten()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let timeout = match limit {
        // Rounded up: a deadline is never polled for 0 ms too early, over and over.
        Some(limit) => {
            PollTimeout::try_from(limit.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX)
        }
        None => PollTimeout::NONE,
    };
    let ok = poll(&mut polled, timeout).is_ok();
    let mut ready = polled.iter().map(|fd| {
        ok && fd.revents().is_some_and(|events| {
            events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        })
    });
    fds.iter()
        .map(|fd| fd.is_some() && ready.next().unwrap_or(false))
        .collect()
}

/// The read end of a command's output pipe, the log it goes to, and the line being read.
struct Output<'a> {
    pipe: Option<io::PipeReader>,
    log: &'a mut TaskLog,
    /// The start of a line not finished yet (at most [`MAX_LINE`]).
    line: Vec<u8>,
}

impl<'a> Output<'a> {
    fn new(fd: OwnedFd, log: &'a mut TaskLog) -> Output<'a> {
        // Non-blocking, so that a read takes only what is there. (A pipe that cannot be made
        // so is not read: the command then writes into a closed pipe.)
        let nonblocking = fcntl(&fd, FcntlArg::F_GETFL)
            .map(OFlag::from_bits_truncate)
            .and_then(|flags| fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)));
        Output {
            pipe: nonblocking.is_ok().then(|| io::PipeReader::from(fd)),
            log,
            line: Vec::new(),
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(AsFd::as_fd)
    }

    /// Read what the pipe holds; at end-of-file (or an error) close it.
    fn read_available(&mut self, on_line: &mut impl FnMut(&str)) {
        let Some(pipe) = &mut self.pipe else { return };
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    break;
                }
                Ok(n) => {
                    self.log.push(&chunk[..n]);
                    hand_out_lines(&mut self.line, &chunk[..n], on_line);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.pipe = None;
                    break;
                }
            }
        }
    }

    /// Read until end-of-file or `deadline`; whether the pipe closed.
    fn read_until(&mut self, deadline: Instant, on_line: &mut impl FnMut(&str)) -> bool {
        while self.pipe.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            wait_for(&[self.fd()], Some(left));
            self.read_available(on_line);
        }
        true
    }

    /// Stop reading; hand out an unfinished last line.
    fn finish(&mut self, on_line: &mut impl FnMut(&str)) {
        self.pipe = None;
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            on_line(text.trim_end_matches(['\n', '\r']));
            self.line.clear();
        }
    }
}

/// Hand out the lines `chunk` finishes (the first one begun in `line`), keeping the start of
/// an unfinished one in `line`; a line past [`MAX_LINE`] is handed out in pieces.
fn hand_out_lines(line: &mut Vec<u8>, mut chunk: &[u8], on_line: &mut impl FnMut(&str)) {
    while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
        line.extend_from_slice(&chunk[..end]);
        let text = String::from_utf8_lossy(line);
        on_line(text.trim_end_matches('\r'));
        line.clear();
        chunk = &chunk[end + 1..];
    }
    line.extend_from_slice(chunk);
    while line.len() >= MAX_LINE {
        let mut cut = MAX_LINE;
        // Not inside a UTF-8 sequence.
        while cut > 0 && cut < line.len() && (line[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        let cut = if cut == 0 { MAX_LINE } else { cut };
        let text = String::from_utf8_lossy(&line[..cut]).into_owned();
        on_line(&text);
        line.drain(..cut);
    }
}

/// Send `signal` to the group and to what left it carrying `tag`, then SIGKILL to both if
/// the shell has not exited within `grace`. (What outlives the shell is killed after.)
fn stop_group(
    child: &mut Child,
    shell: &Shell,
    pgid: Pid,
    tag: &ProcessTag,
    signal: Signal,
    grace: Duration,
) {
    let _ = killpg(pgid, signal);
    let outside = |signal| {
        process_tag::signal_tagged_outside(
            &process_tag::descendants(),
            |t| t == tag.as_str(),
            signal,
            pgid.as_raw(),
        )
    };
    let escaped = outside(signal);
    if !shell.wait(child, grace) {
        let _ = killpg(pgid, Signal::SIGKILL);
        if !escaped.is_empty() {
            outside(Signal::SIGKILL);
        }
        let _ = child.wait();
    }
}

fn exit_of(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Signal(0),
    }
}

/// A sandbox error as one line: the error and its help.
fn sandbox_error(err: &clab_sandbox::Error) -> String {
    use miette::Diagnostic;
    match err.help() {
        Some(help) => format!("{err} ({help})"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_command_runs_without_the_shell_and_anything_else_with_it() {
        assert_eq!(
            direct_argv("  uv run  pytest -q tests/a_b.py "),
            Some(vec!["uv", "run", "pytest", "-q", "tests/a_b.py"])
        );
        assert_eq!(
            direct_argv("cargo build --release -p clab"),
            Some(vec!["cargo", "build", "--release", "-p", "clab"])
        );
        for shell in [
            "",
            "   ",
            "echo hi",
            "true",
            "false",
            "echo $HOME",
            "echo 'a b'",
            "echo \"a\"",
            "ls *.py",
            "cat a > b",
            "a && b",
            "a; b",
            "a | b",
            "a &",
            "cd build",
            "export A=1",
            "A=1 make",
            "exit 3",
            "echo -e x",
            "echo --help",
            "pwd",
            "test -f x",
            "ls ~",
            "echo a\\b",
            "echo a\tb",
            "echo a\nb",
            "echo # note",
            "make (x)",
        ] {
            assert_eq!(direct_argv(shell), None, "{shell:?} needs the shell");
        }
    }

    #[test]
    fn the_pwd_a_shell_would_export() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let link = real.with_extension("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let env =
            |pwd: &std::path::Path| BTreeMap::from([("PWD".to_owned(), pwd.display().to_string())]);
        // An inherited PWD that names the directory (through a symlink too) is kept.
        assert_eq!(shell_pwd(&real, &env(&link)), None);
        assert_eq!(shell_pwd(&link, &env(&real)), None);
        // Otherwise the directory's real path.
        assert_eq!(
            shell_pwd(&link, &env(std::path::Path::new("/"))),
            Some(real.clone())
        );
        let parent = link.parent().unwrap();
        let dotted = parent
            .join("..")
            .join(parent.strip_prefix("/").unwrap())
            .join(link.file_name().unwrap());
        assert!(dotted.is_dir());
        assert_eq!(
            shell_pwd(&link, &env(&dotted)),
            Some(real.clone()),
            "a PWD with .. is not kept"
        );
        std::fs::remove_file(link).unwrap();
    }

    fn spec(line: &str) -> CommandSpec {
        CommandSpec {
            line: line.to_owned(),
            cwd: std::env::temp_dir(),
            env: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
            timeout: None,
            grace: Duration::from_millis(200),
            sandbox: None,
        }
    }

    fn run(spec: &CommandSpec) -> (Exit, String, Vec<String>) {
        let mut lines = Vec::new();
        let (exit, log) = run_command(
            spec,
            |line| lines.push(line.to_owned()),
            &Stop::new(),
            || {},
        )
        .unwrap();
        (exit, String::from_utf8(log).unwrap(), lines)
    }

    #[test]
    fn captures_both_streams_in_order() {
        let (exit, log, lines) = run(&spec("echo $GREETING; echo oops >&2; echo end; exit 3"));
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(log, "hi\noops\nend\n");
        assert_eq!(lines, ["hi", "oops", "end"]);
    }

    #[test]
    fn an_unfinished_last_line_and_long_output_are_kept() {
        let (exit, log, lines) = run(&spec("seq 1 20000; printf tail"));
        assert_eq!(exit, Exit::Code(0));
        assert_eq!(lines.len(), 20001);
        assert_eq!(lines.last().map(String::as_str), Some("tail"));
        assert!(
            log.ends_with("19999\n20000\ntail"),
            "{}",
            &log[log.len() - 20..]
        );
    }

    #[test]
    fn a_signal_ends_the_shell() {
        let (exit, _, _) = run(&spec("kill -TERM $$"));
        assert_eq!(exit, Exit::Signal(15));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let mut spec = spec("sleep 30 & echo started; wait");
        spec.timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let (exit, log, _) = run(&spec);
        assert_eq!(exit, Exit::TimedOut(Duration::from_millis(300)));
        assert_eq!(log, "started\n");
        // The background `sleep 30` held the pipe open; reaching here means it was killed.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_shell_ending_kills_what_it_left_running() {
        // The background `sleep` keeps the pipe open: the exit is seen through the pidfd.
        let started = Instant::now();
        let (exit, log, _) = run(&spec("sleep 30 & echo left"));
        assert_eq!(exit, Exit::Code(0));
        assert_eq!(log, "left\n");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn stop_interrupts_the_command() {
        let stop = Stop::new();
        let raiser = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                stop.raise();
            })
        };
        let (exit, _) = run_command(&spec("sleep 30"), |_| {}, &stop, || {}).unwrap();
        raiser.join().unwrap();
        assert_eq!(exit, Exit::Interrupted);
        assert!(stop.is_raised());
    }

    #[test]
    fn a_failed_command_is_named_when_the_task_has_several() {
        assert_eq!(Exit::Code(1).describe_command(1, 1, "false"), "exit 1");
        assert_eq!(
            Exit::Code(1).describe_command(2, 3, "test -f nothere"),
            "command 2 of 3 `test -f nothere` exited 1"
        );
        assert_eq!(
            Exit::Signal(9).describe_command(1, 2, "sleep 9"),
            "command 1 of 2 `sleep 9` was killed by signal 9"
        );
        assert_eq!(
            Exit::TimedOut(Duration::from_secs(5)).describe_command(3, 3, "x\ny"),
            "command 3 of 3 `x…` timed out after 5.0s"
        );
        let long = "a".repeat(70);
        assert!(
            Exit::Code(2)
                .describe_command(1, 2, &long)
                .ends_with(&format!("`{}…` exited 2", "a".repeat(60)))
        );
    }

    #[test]
    fn a_shell_without_a_pidfd_is_checked_on_until_it_exits() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 0.1"])
            .spawn()
            .unwrap();
        let shell = Shell {
            pidfd: None,
            exited: false,
        };
        assert!(shell.may_have_exited());
        assert!(!shell.wait(&mut child, Duration::from_millis(20)));
        assert!(shell.wait(&mut child, Duration::from_secs(10)));
        assert!(child.try_wait().unwrap().is_some());
    }

    #[test]
    fn a_missing_directory_is_a_spawn_error() {
        let mut spec = spec("true");
        spec.cwd = PathBuf::from("/nonexistent/clab-test");
        let err = run_command(&spec, |_| {}, &Stop::new(), || {}).unwrap_err();
        assert_eq!(err.cwd, "/nonexistent/clab-test");
    }

    /// Whether `pid` still runs (a zombie counts as gone).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    /// The pid written to `file` in `dir` by a command.
    fn pid_in(dir: &std::path::Path, file: &str) -> i32 {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(text) = std::fs::read_to_string(dir.join(file))
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            assert!(Instant::now() < until, "no {file}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_escaped_process_holding_the_output_does_not_hold_up_the_end_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec("setsid sleep 12 & echo $! > escaped.pid; sleep 0.3; echo ok");
        spec.cwd = dir.path().to_owned();
        let started = Instant::now();
        let mut log = TaskLog::new(None);
        let ran = run_command_into(&spec, &mut log, |_| {}, &Stop::new(), || {}).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(ran.exit, Exit::Code(0));
        assert_eq!(ran.escaped, 1);
        assert!(!ran.output_abandoned);
        assert_eq!(log.tail_text(), "ok\n");
        assert!(
            !alive(pid_in(dir.path(), "escaped.pid")),
            "the escaped sleep survived"
        );
    }

    #[test]
    fn an_interrupt_ends_a_command_whose_escapee_ignores_it_within_the_grace_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(
            "setsid sh -c 'trap \"\" INT TERM; echo $$ > escaped.pid; sleep 12; sleep 12' & \
             sleep 0.2; echo started; wait",
        );
        spec.cwd = dir.path().to_owned();
        spec.grace = Duration::from_millis(300);
        let stop = Stop::new();
        let raiser = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                stop.raise();
            })
        };
        let started = Instant::now();
        let mut log = TaskLog::new(None);
        let ran = run_command_into(&spec, &mut log, |_| {}, &stop, || {}).unwrap();
        raiser.join().unwrap();
        assert_eq!(ran.exit, Exit::Interrupted);
        // 0.5 s until the interrupt, the grace period, and a little.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !alive(pid_in(dir.path(), "escaped.pid")),
            "the escapee survived"
        );
    }

    #[test]
    fn a_double_fork_that_closes_its_output_is_killed_when_the_command_ends_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(
            "(setsid sh -c 'echo $$ > daemon.pid; exec sleep 12' >/dev/null 2>&1 &); sleep 0.3; echo ok",
        );
        spec.cwd = dir.path().to_owned();
        let mut log = TaskLog::new(None);
        let ran = run_command_into(&spec, &mut log, |_| {}, &Stop::new(), || {}).unwrap();
        assert_eq!(ran.exit, Exit::Code(0));
        let pid = pid_in(dir.path(), "daemon.pid");
        assert_eq!(ran.escaped, 1, "found among the orphans clab adopted");
        let until = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "the daemon survived");
    }

    #[test]
    fn a_line_without_end_comes_in_bounded_pieces() {
        let (exit, log, lines) = run(&spec("head -c 200000 /dev/zero | tr '\\0' x"));
        assert_eq!(exit, Exit::Code(0));
        assert_eq!(log.len(), 200_000);
        assert_eq!(lines.iter().map(String::len).sum::<usize>(), 200_000);
        assert!(lines.iter().all(|line| line.len() <= MAX_LINE));
    }
}
