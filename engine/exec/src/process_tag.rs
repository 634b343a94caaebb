//! [`ProcessTag`]: the mark every process of a command carries, by which clab finds what a
//! command left running outside its process group (issue 18).
//!
//! A command runs in its own process group, and killing the group ends everything that
//! stayed in it. A process that leaves the group (`setsid`, a daemon's double fork) is not
//! reached by that — and when it keeps the output pipe open, the command seemed never to end
//! (one run ignored Ctrl-C for ten minutes). So:
//!
//! - every command's environment holds [`TAG_VAR`]` = <clab pid>.<clab start time>.<n>`,
//!   inherited by everything it starts (a program has to clear its environment on purpose
//!   to lose it);
//! - clab is a child subreaper ([`become_subreaper`]): an orphan of a command is re-parented
//!   to clab, not to init, so it stays among clab's descendants;
//! - so the processes a command left are the descendants of clab that carry its tag
//!   (`signal_tagged`), and a clab that was killed is known by the prefix of its tags
//!   (`process_record` and `watchdog` find its processes by it).
//!
//! Linux only (`/proc`); elsewhere nothing is found and process groups are all there is.
//!
//! Invariants: a process is signalled only when its environment holds a tag of this clab
//! (or of the dead clab being cleaned up after): pid reuse can never point a kill at a
//! stranger. The tag is not part of any cache key.

use std::{
    collections::HashSet,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use nix::{
    sys::{
        signal::{Signal, kill, killpg},
        wait::{WaitPidFlag, waitpid},
    },
    unistd::Pid,
};

/// The environment variable that holds a command's tag.
pub const TAG_VAR: &str = "CLAB_PROCESS_TAG";

/// The tag of one command: `<clab pid>.<clab start time>.<n>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessTag(String);

static NEXT: AtomicU64 = AtomicU64::new(1);

impl ProcessTag {
    /// A tag no other command of any clab carries.
    pub fn next() -> ProcessTag {
        ProcessTag(format!(
            "{}{}",
            ProcessTag::prefix(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// What every tag of this clab starts with: `<pid>.<start time>.`. The start time (in
    /// clock ticks since boot, from `/proc`) tells this clab from a later one with its pid.
    pub fn prefix() -> &'static str {
        static PREFIX: OnceLock<String> = OnceLock::new();
        PREFIX.get_or_init(|| format!("{}.{}.", std::process::id(), own_start_time()))
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Make clab a child subreaper (Linux): orphans of its commands become its children instead
/// of init's, so they stay among its descendants, where `signal_tagged` looks. Harmless to
/// call again. Zombies of such orphans that end by themselves stay until clab exits (clab
/// cannot `wait` for "any child" without taking the exit status the runtime waits for).
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            let _ = nix::sys::prctl::set_child_subreaper(true);
        });
    }
}

/// This process's [`start_time`], read once (0 when `/proc` cannot say).
pub(crate) fn own_start_time() -> u64 {
    static STARTED: OnceLock<u64> = OnceLock::new();
    *STARTED.get_or_init(|| start_time(std::process::id() as i32).unwrap_or(0))
}

/// The start time of process `pid` (clock ticks since boot), from `/proc/PID/stat`.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The process group of `pid`.
pub(crate) fn group_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// The parent of `pid`.
fn parent_of(pid: i32) -> Option<i32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// A small file of `/proc`, read whole. `std::fs::read` sizes its buffer from the file's
/// size, which `/proc` reports as 0: a `statx` and five reads for `/proc/PID/stat`. One page
/// holds these files: an `open`, a read, the read that says end of file, and a `close`.
fn read_proc(path: &str) -> Option<Vec<u8>> {
    read_whole(&std::fs::File::open(path).ok()?)
}

/// A small file read from its position to its end into a page-sized buffer. Not
/// `read_to_end`: on a `File` it asks for the size and position first.
pub(crate) fn read_whole(mut file: &std::fs::File) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0; 4096];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    bytes.truncate(len);
    Some(bytes)
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, …
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = read_proc(&format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold anything, `)` included.
    let end = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(end + 2..)?).ok()?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The tag in the environment of `pid`, if it has one (and its environment can be read: a
/// zombie's or another user's cannot).
pub(crate) fn tag_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let wanted = format!("{TAG_VAR}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(wanted.as_bytes()))
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_owned)
}

/// The children of `pid` (of all its threads), from `/proc/PID/task/*/children`; `None` when
/// the kernel does not offer those files.
fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let Some(text) = task.path().join("children").to_str().and_then(read_proc) else {
            continue;
        };
        any = true;
        children.extend(pids_in(&text));
    }
    any.then_some(children)
}

/// The children of clab's main thread: where the kernel puts the orphans clab adopts as a
/// subreaper (the first live thread of the process), with whatever that thread started
/// itself. One small read, cheap enough for the end of every command.
pub(crate) fn adopted() -> Vec<i32> {
    let pid = std::process::id();
    read_proc(&format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| pids_in(&text).collect())
        .unwrap_or_default()
}

/// The pids in a `children` file (separated by spaces).
fn pids_in(text: &[u8]) -> impl Iterator<Item = i32> + '_ {
    text.split(u8::is_ascii_whitespace)
        .filter_map(|p| std::str::from_utf8(p).ok()?.parse().ok())
}

/// [`signal_tagged`] for the processes outside group `group`.
pub(crate) fn signal_tagged_outside(
    pids: &[i32],
    ours: impl Fn(&str) -> bool,
    signal: Signal,
    group: i32,
) -> Vec<i32> {
    signal_tagged(pids, ours, signal, Some(group))
}

/// `roots` and everything below them.
pub(crate) fn subtree(roots: Vec<i32>) -> Vec<i32> {
    let mut seen: HashSet<i32> = HashSet::new();
    let mut stack = roots;
    let mut found = Vec::new();
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        found.push(pid);
        stack.extend(children_of(pid).unwrap_or_default());
    }
    found
}

/// Every process below clab: its children's subtrees, or — where the kernel does not list
/// children — every process on the machine (the tag decides either way).
pub(crate) fn descendants() -> Vec<i32> {
    match children_of(std::process::id() as i32) {
        Some(children) => subtree(children),
        None => everyone(),
    }
}

/// Every process on the machine.
pub(crate) fn everyone() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Send `signal` to each of `pids` whose tag `ours` accepts, and to the process group each
/// of them leads (its group-mates need not carry the tag); never to clab itself, nor to a
/// process of group `skip_group` (which got the signal as a group). Returns the processes
/// signalled.
pub(crate) fn signal_tagged(
    pids: &[i32],
    ours: impl Fn(&str) -> bool,
    signal: Signal,
    skip_group: Option<i32>,
) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut hit = Vec::new();
    for &pid in pids {
        if pid == me || pid <= 1 {
            continue;
        }
        let Some(tag) = tag_of(pid) else { continue };
        if !ours(&tag) {
            continue;
        }
        let group = group_of(pid);
        if skip_group.is_some() && group == skip_group {
            continue;
        }
        if group == Some(pid) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
        let _ = kill(Pid::from_raw(pid), signal);
        hit.push(pid);
    }
    hit
}

/// Collect the exit status of those of `pids` that are clab's children (orphans it adopted
/// and then killed), waiting up to `within` for them to die.
pub(crate) fn reap(pids: &[i32], within: Duration) {
    let me = std::process::id() as i32;
    let until = Instant::now() + within;
    let mut left: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&pid| parent_of(pid) == Some(me))
        .collect();
    while !left.is_empty() {
        left.retain(|&pid| {
            matches!(
                waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
                Ok(nix::sys::wait::WaitStatus::StillAlive)
            )
        });
        if left.is_empty() || Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kill (SIGKILL) every process below clab that carries one of its tags and is not of a
/// command still running (`live`); returns how many. The end of a run calls this: nothing a
/// command started outlives the run.
pub fn kill_leftovers(live: &HashSet<String>) -> usize {
    let prefix = ProcessTag::prefix();
    let pids = descendants();
    let hit = signal_tagged(
        &pids,
        |tag| tag.starts_with(prefix) && !live.contains(tag),
        Signal::SIGKILL,
        None,
    );
    reap(&hit, Duration::from_millis(200));
    hit.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_and_start_with_this_clabs_prefix() {
        let (a, b) = (ProcessTag::next(), ProcessTag::next());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with(ProcessTag::prefix()));
        let pid = std::process::id();
        assert!(ProcessTag::prefix().starts_with(&format!("{pid}.")));
        assert!(start_time(pid as i32).is_some_and(|t| t > 0));
    }

    #[test]
    fn a_tagged_process_is_found_below_clab_and_killed_with_its_group() {
        become_subreaper();
        let tag = ProcessTag::next();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .env(TAG_VAR, tag.as_str())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Its environment is readable once it has exec'd.
        let until = Instant::now() + Duration::from_secs(5);
        while tag_of(pid).as_deref() != Some(tag.as_str()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let found = descendants();
        assert!(found.contains(&pid));
        let other = ProcessTag::next();
        assert!(signal_tagged(&found, |t| t == other.as_str(), Signal::SIGKILL, None).is_empty());
        let hit = signal_tagged(&found, |t| t == tag.as_str(), Signal::SIGKILL, None);
        assert!(hit.contains(&pid), "{hit:?}");
        child.wait().unwrap();
    }

    use std::os::unix::process::CommandExt;
}
