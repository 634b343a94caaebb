//! [`ProcessRecord`]: the record of the process groups a clab is running, kept in the cache
//! directory so that the next clab can kill what a killed one left (issue 18).
//!
//! # Format (version [`RECORD_VERSION`])
//!
//! `<cache dir>/processes/<clab pid>`, text:
//!
//! ```text
//! clab-processes 1
//! 4242 918273 4242.918273.
//! 4250
//! 4263
//! ```
//!
//! The header names the clab (pid and start time, so a later process with the same pid is
//! not taken for it) and the prefix of its commands' tags (`process_tag`); then one line per
//! process group it started, appended with one `write` each (`O_APPEND`, shorter than
//! `PIPE_BUF`: a reader sees whole lines, a torn last line is skipped). The header is written
//! with the file, through a temp file and a rename. The file is removed when the clab has no
//! command running at the end of a run; one that stays names a clab that did not get there.
//!
//! # Reaping
//!
//! [`reap_stale`], at the start of every run, reads the records of clabs that are gone and
//! kills every process that carries one of their tags, with the groups they lead, and the
//! recorded groups that still hold such a process. A group whose members all dropped the tag
//! is left alone: without the tag, nothing proves it is still the one recorded.
//! The watchdog (`watchdog`) normally did this already, the moment the clab died.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

use crate::process_tag::{ProcessTag, everyone, own_start_time, start_time, tag_of};

/// The version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// The directory of the records, below the cache directory.
pub const RECORD_DIR: &str = "processes";

/// This clab's record: where it goes, the open file, and the groups running now by tag.
#[derive(Debug, Default)]
pub struct ProcessRecord {
    dir: Option<PathBuf>,
    file: Option<File>,
    live: HashMap<String, i32>,
}

static RECORD: Mutex<Option<ProcessRecord>> = Mutex::new(None);

fn with_record<T>(f: impl FnOnce(&mut ProcessRecord) -> T) -> T {
    let mut guard = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(ProcessRecord::default))
}

impl ProcessRecord {
    /// Keep this clab's record in `cache_dir` (the first one given stays).
    pub fn keep_in(cache_dir: &Path) {
        with_record(|record| {
            if record.dir.is_none() {
                record.dir = Some(cache_dir.join(RECORD_DIR));
            }
        });
    }

    /// A command with `tag` started, leading process group `pgid`.
    pub fn started(tag: &ProcessTag, pgid: i32) {
        with_record(|record| {
            record.live.insert(tag.as_str().to_owned(), pgid);
            record.append(pgid);
        });
    }

    /// The command with `tag` ended, its group killed.
    pub fn ended(tag: &ProcessTag) {
        with_record(|record| {
            record.live.remove(tag.as_str());
        });
    }

    /// `pids` without the shells of the commands running now (each leads its group) and
    /// the watchdog: what is left may be an orphan clab adopted.
    pub fn not_running(mut pids: Vec<i32>) -> Vec<i32> {
        let watchdog = crate::watchdog::Watchdog::pid();
        pids.retain(|&pid| Some(pid) != watchdog);
        if pids.is_empty() {
            return pids;
        }
        with_record(|record| pids.retain(|pid| !record.live.values().any(|group| group == pid)));
        pids
    }

    /// The tags of the commands running now.
    pub fn live_tags() -> HashSet<String> {
        with_record(|record| record.live.keys().cloned().collect())
    }

    /// At the end of a run: with no command running, remove the record (nothing is left to
    /// reap). Returns whether none runs.
    pub fn settle() -> bool {
        with_record(|record| {
            if !record.live.is_empty() {
                return false;
            }
            if record.file.take().is_some()
                && let Some(path) = record.path()
            {
                let _ = fs::remove_file(path);
            }
            true
        })
    }

    fn path(&self) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(std::process::id().to_string()))
    }

    /// Append group `pgid`, creating the file (header first) when there is none. Best
    /// effort: a cache directory that cannot be written loses the record, not the run.
    fn append(&mut self, pgid: i32) {
        if self.file.is_none() {
            self.file = self.create();
        }
        if let Some(file) = &mut self.file {
            let _ = file.write_all(format!("{pgid}\n").as_bytes());
        }
    }

    fn create(&self) -> Option<File> {
        let dir = self.dir.as_ref()?;
        fs::create_dir_all(dir).ok()?;
        let path = self.path()?;
        let pid = std::process::id();
        let header = format!(
            "clab-processes {RECORD_VERSION}\n{pid} {} {}\n",
            own_start_time(),
            ProcessTag::prefix()
        );
        clab_model::atomic_write::write_atomic_unsynced(&path, header.as_bytes()).ok()?;
        OpenOptions::new().append(true).open(&path).ok()
    }
}

/// What [`reap_stale`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// The pids of the dead clabs whose records were read.
    pub clabs: Vec<u32>,
    /// How many processes they left were killed.
    pub killed: usize,
}

/// Kill what the clabs recorded in `cache_dir` left running, for each record whose clab is
/// gone, and remove those records. A record of a clab still running (another `clab run` on
/// the same project) is left alone.
pub fn reap_stale(cache_dir: &Path) -> Reaped {
    let mut reaped = Reaped::default();
    let Ok(entries) = fs::read_dir(cache_dir.join(RECORD_DIR)) else {
        return reaped;
    };
    let me = std::process::id();
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Some(found) = parse(&text) else {
            // Not ours to judge (a newer format, or a torn header): leave it.
            continue;
        };
        if found.pid != pid || start_time(pid as i32) == Some(found.started) {
            // Its clab still runs.
            continue;
        }
        stale.push((path, found));
    }
    if stale.is_empty() {
        return reaped;
    }
    // Every process that carries a tag of a dead clab, by its process group.
    let mut pids_by_group: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in everyone() {
        let Some(tag) = tag_of(pid) else { continue };
        if stale
            .iter()
            .any(|(_, found)| tag.starts_with(&found.prefix))
        {
            let group = group_of(pid).unwrap_or(pid);
            pids_by_group.entry(group).or_default().push(pid);
        }
    }
    for (path, found) in &stale {
        for &group in &found.groups {
            if pids_by_group.contains_key(&group) {
                let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
            }
        }
        reaped.clabs.push(found.pid);
        let _ = fs::remove_file(path);
    }
    for (group, pids) in &pids_by_group {
        let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
        for pid in pids {
            if kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok() {
                reaped.killed += 1;
            }
        }
    }
    reaped.clabs.sort_unstable();
    reaped
}

fn group_of(pid: i32) -> Option<i32> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let end = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(end + 2..)?).ok()?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// A record as read back.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    pid: u32,
    started: u64,
    prefix: String,
    groups: Vec<i32>,
}

fn parse(text: &str) -> Option<Found> {
    let mut lines = text.lines();
    if lines.next()? != format!("clab-processes {RECORD_VERSION}") {
        return None;
    }
    let mut header = lines.next()?.split(' ');
    let pid = header.next()?.parse().ok()?;
    let started = header.next()?.parse().ok()?;
    let prefix = header.next()?.to_owned();
    if !prefix.starts_with(&format!("{pid}.")) {
        return None;
    }
    // A torn last line (a kill mid-append) does not parse and is skipped.
    let groups = lines.filter_map(|line| line.parse().ok()).collect();
    Some(Found {
        pid,
        started,
        prefix,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_tag::TAG_VAR;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_record_reads_back_and_a_torn_line_is_skipped() {
        let found = parse("clab-processes 1\n42 7 42.7.\n100\n101\n10").unwrap();
        assert_eq!(found.groups, [100, 101, 10]);
        assert_eq!(
            parse("clab-processes 1\n42 7 42.7.\n100\n1x0")
                .unwrap()
                .groups,
            [100]
        );
        assert!(parse("clab-processes 2\n42 7 42.7.\n").is_none());
        assert!(parse("clab-processes 1\n42 7 43.7.\n").is_none());
    }

    #[test]
    fn the_processes_of_a_dead_clab_are_reaped_and_a_live_ones_are_not_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join(RECORD_DIR);
        fs::create_dir_all(&records).unwrap();
        // A dead clab: a pid that is not running, with tags that name it.
        let dead = 4_000_000u32 - 7;
        let prefix = format!("{dead}.5.");
        let mut left = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .env(TAG_VAR, format!("{prefix}1"))
            .process_group(0)
            .spawn()
            .unwrap();
        let group = left.id() as i32;
        fs::write(
            records.join(dead.to_string()),
            format!("clab-processes 1\n{dead} 5 {prefix}\n{group}\n"),
        )
        .unwrap();
        // A clab that still runs (a `sleep` stands in for it): its record stays.
        let mut running = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = running.id();
        let other = records.join(pid.to_string());
        let started = start_time(pid as i32).unwrap();
        fs::write(
            &other,
            format!("clab-processes 1\n{pid} {started} {pid}.{started}.\n"),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let reaped = reap_stale(dir.path());
        assert_eq!(reaped.clabs, [dead]);
        assert!(reaped.killed >= 1, "{reaped:?}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(left.wait().unwrap().signal(), Some(9));
        assert!(!records.join(dead.to_string()).exists());
        assert!(other.exists(), "a record of a running clab is kept");
        running.kill().unwrap();
        running.wait().unwrap();
    }
}
