//! [`ProcessRecord`]: the record of the process groups a clab is running, kept in the cache
//! directory so that the next clab can kill what a killed one left (issue 18).
//!
//! # Format (version [`RECORD_VERSION`])
//!
//! `<cache dir>/processes/slot-<n>`, text:
//!
//! ```text
//! clab-processes 1
//! 4242 918273 4242.918273.
//! 4250
//! 4263
//! ```
//!
//! The header names the clab (pid and start time) and the prefix of its commands' tags
//! (`process_tag`); then one line per process group it started, each written with one
//! `pwrite` after the last (a torn last line is skipped). When the clab has no command
//! running at the end of a run, the record is blanked (overwritten with line ends, which the
//! next record overwrites in turn); a slot that holds a record names a clab that did not get
//! there.
//!
//! # Slots
//!
//! A clab holds its slot's `flock` from its first command to its exit, and the kernel drops
//! the lock however the process ends, `kill -9` included: a slot that can be locked belongs
//! to nobody alive. A clab takes the first slot it can lock (`slot-0` unless another clab
//! runs in the same project) and keeps it for every run of the process (`clab watch`).
//!
//! Why slots and not a file per clab, created and removed: that was a new inode each run,
//! and on ext4 finding a free inode among recently deleted ones was ~9% of the CPU of a run of
//! `echo hi` (`perf record` of 400 runs). A slot is one `open` and one `flock`; its lines are
//! written in place. They are not written through a temp file and a rename like every other
//! file clab writes: the record must be on disk before the command's first instant, line by
//! line, and nothing else ever reads a slot while its clab lives.
//!
//! Records of the previous layout (`processes/<clab pid>`, removed at the end of a run; the
//! clab was alive while its pid ran with the recorded start time) are still reaped.
//!
//! # Reaping
//!
//! `reap_stale`, at the start of every run (`ProcessRecord::start`), reads the records of
//! clabs that are gone and kills every process that carries one of their tags, with the groups they lead, and the
//! recorded groups that still hold such a process. A group whose members all dropped the tag
//! is left alone: without the tag, nothing proves it is still the one recorded.
//! The watchdog (`watchdog`) normally did this already, the moment the clab died.

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

use crate::process_tag::{
    ProcessTag, everyone, group_of, own_start_time, read_whole, start_time, tag_of,
};

/// The version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// The directory of the records, below the cache directory.
pub const RECORD_DIR: &str = "processes";

/// The name prefix of a slot (`slot-0`, `slot-1`, …).
const SLOT_PREFIX: &str = "slot-";

/// How many slots a clab tries before it runs without a record (as many clabs at once on
/// one project).
const SLOTS: usize = 64;

/// This clab's record: where it goes, its slot, and the groups running now by tag.
#[derive(Debug, Default)]
pub struct ProcessRecord {
    dir: Option<PathBuf>,
    slot: Option<Slot>,
    live: HashMap<String, i32>,
}

/// A slot this clab holds (locked), and how much of it is written.
#[derive(Debug)]
struct Slot {
    file: File,
    len: u64,
}

static RECORD: Mutex<Option<ProcessRecord>> = Mutex::new(None);

fn with_record<T>(f: impl FnOnce(&mut ProcessRecord) -> T) -> T {
    let mut guard = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(ProcessRecord::default))
}

impl ProcessRecord {
    /// At the start of a run: kill what the clabs recorded in `cache_dir` left running
    /// (`reap_stale`) and keep this clab's record there (the first directory given stays),
    /// in the first free slot the reaping came across.
    pub fn start(cache_dir: &Path) -> Reaped {
        let (reaped, free) = reap_stale(cache_dir);
        with_record(|record| {
            if record.dir.is_none() {
                record.dir = Some(cache_dir.join(RECORD_DIR));
                record.slot = free.map(|file| Slot { file, len: 0 });
            }
        });
        reaped
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

    /// At the end of a run: with no command running, blank the record (nothing is left to
    /// reap; the slot stays this clab's). Returns whether none runs.
    pub fn settle() -> bool {
        with_record(|record| {
            if !record.live.is_empty() {
                return false;
            }
            // Blanked rather than truncated: on ext4 a truncation is a journaled orphan-list
            // update, an overwrite of a page already there is not.
            if let Some(slot) = &mut record.slot
                && slot.len > 0
                && slot
                    .file
                    .write_all_at(&vec![b'\n'; slot.len as usize], 0)
                    .is_ok()
            {
                slot.len = 0;
            }
            true
        })
    }

    /// Append group `pgid`, taking a slot (header first) when this clab has none, or
    /// writing the header again when the record was emptied. Best effort: a cache directory
    /// that cannot be written loses the record, not the run.
    fn append(&mut self, pgid: i32) {
        if self.slot.is_none() {
            self.slot = self.dir.as_deref().and_then(claim);
        }
        let Some(slot) = &mut self.slot else { return };
        let mut text = String::new();
        if slot.len == 0 {
            let pid = std::process::id();
            text = format!(
                "clab-processes {RECORD_VERSION}\n{pid} {} {}\n",
                own_start_time(),
                ProcessTag::prefix()
            );
        }
        text.push_str(&format!("{pgid}\n"));
        if slot.file.write_all_at(text.as_bytes(), slot.len).is_ok() {
            slot.len += text.len() as u64;
        }
    }
}

/// Take the first slot in `dir` no live clab holds. One still holding a record (its clab died
/// after this one's `reap_stale`) is reaped first.
fn claim(dir: &Path) -> Option<Slot> {
    let open = |path: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    for n in 0..SLOTS {
        let path = dir.join(format!("{SLOT_PREFIX}{n}"));
        let file = match open(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).ok()?;
                open(&path)
            }
            opened => opened,
        };
        let Ok(file) = file else { continue };
        if file.try_lock().is_err() {
            continue;
        }
        match read_slot(&file) {
            Left::Empty => {}
            Left::Record(found) => {
                kill_left(&[found]);
                if file.set_len(0).is_err() {
                    continue;
                }
            }
            Left::Torn => {
                if file.set_len(0).is_err() {
                    continue;
                }
            }
            // A newer clab's record: not ours to judge or to overwrite.
            Left::Unknown => continue,
        }
        return Some(Slot { file, len: 0 });
    }
    None
}

/// What a slot nobody holds has in it.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// Nothing (or only line ends): its clab finished, or it is new.
    Empty,
    /// The record of a clab that died.
    Record(Found),
    /// A header torn by a crash as it was written: it names no process.
    Torn,
    /// Something this clab cannot read (a newer format).
    Unknown,
}

fn read_slot(file: &File) -> Left {
    // Just opened: read from the start (the record's writes are `pwrite`s at offsets).
    let Some(text) = read_whole(file).and_then(|bytes| String::from_utf8(bytes).ok()) else {
        return Left::Unknown;
    };
    if text.bytes().all(|b| b == b'\n') {
        return Left::Empty;
    }
    match parse(&text) {
        Some(found) => Left::Record(found),
        None if !text.contains('\n')
            || text.starts_with(&format!("clab-processes {RECORD_VERSION}\n")) =>
        {
            Left::Torn
        }
        None => Left::Unknown,
    }
}

/// What the reaping at the start of a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// The pids of the dead clabs whose records were read.
    pub clabs: Vec<u32>,
    /// How many processes they left were killed.
    pub killed: usize,
}

/// Kill what the clabs recorded in `cache_dir` left running, for each record whose clab is
/// gone, and empty (or remove) those records. A record of a clab still running (another
/// `clab run` on the same project) is left alone.
///
/// Returns, beside what it did, the first slot it found free, still locked.
fn reap_stale(cache_dir: &Path) -> (Reaped, Option<File>) {
    let mut reaped = Reaped::default();
    let mut free = None;
    let Ok(entries) = fs::read_dir(cache_dir.join(RECORD_DIR)) else {
        return (reaped, free);
    };
    let me = std::process::id();
    let mut stale = Vec::new();
    // The slots read, locked until their records are reaped and emptied.
    let mut slots = Vec::new();
    // Records of the previous layout, removed once reaped.
    let mut legacy = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with(SLOT_PREFIX) {
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_err() {
                // Its clab is alive (this one included).
                continue;
            }
            match read_slot(&file) {
                Left::Record(found) => {
                    stale.push(found);
                    slots.push(file);
                }
                Left::Torn => {
                    if file.set_len(0).is_ok() && free.is_none() {
                        free = Some(file);
                    }
                }
                Left::Empty if free.is_none() => free = Some(file),
                Left::Empty | Left::Unknown => {}
            }
            continue;
        }
        // The previous layout: a file named by the clab's pid.
        let Ok(pid) = name.parse::<u32>() else {
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
        stale.push(found);
        legacy.push(path);
    }
    if stale.is_empty() {
        return (reaped, free);
    }
    reaped.killed = kill_left(&stale);
    reaped.clabs = stale.iter().map(|found| found.pid).collect();
    reaped.clabs.sort_unstable();
    for slot in slots {
        if slot.set_len(0).is_ok() && free.is_none() {
            free = Some(slot);
        }
    }
    for path in legacy {
        let _ = fs::remove_file(path);
    }
    (reaped, free)
}

/// Kill every process that carries a tag of the dead clabs `stale` name, with the groups
/// they lead, and their recorded groups that still hold such a process; returns how many
/// processes were killed.
fn kill_left(stale: &[Found]) -> usize {
    // Every process that carries a tag of a dead clab, by its process group.
    let mut pids_by_group: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in everyone() {
        let Some(tag) = tag_of(pid) else { continue };
        if stale.iter().any(|found| tag.starts_with(&found.prefix)) {
            let group = group_of(pid).unwrap_or(pid);
            pids_by_group.entry(group).or_default().push(pid);
        }
    }
    for found in stale {
        for &group in &found.groups {
            if pids_by_group.contains_key(&group) {
                let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
            }
        }
    }
    let mut killed = 0;
    for (group, pids) in &pids_by_group {
        let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
        for pid in pids {
            if kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    }
    killed
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
    fn a_blanked_slot_is_free_and_a_record_over_blanks_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot-0");
        let read = |text: &str| {
            fs::write(&path, text).unwrap();
            read_slot(&File::open(&path).unwrap())
        };
        assert_eq!(read(""), Left::Empty);
        assert_eq!(read("\n\n\n\n"), Left::Empty, "blanked at the end of a run");
        let Left::Record(found) = read("clab-processes 1\n42 7 42.7.\n100\n\n\n\n") else {
            panic!("a record written over a blanked one")
        };
        assert_eq!(found.groups, [100]);
        assert_eq!(read("clab-proc"), Left::Torn);
        assert_eq!(read("clab-processes 2\n"), Left::Unknown);
    }

    /// A process group started the way clab starts a command, tagged `prefix` + `1`.
    fn tagged_group(prefix: &str) -> std::process::Child {
        std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .env(TAG_VAR, format!("{prefix}1"))
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_slot_is_taken_once_emptied_when_done_and_a_dead_ones_record_reaped() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join(RECORD_DIR);
        let mine = claim(&records).unwrap();
        let second = claim(&records).unwrap();
        assert!(records.join("slot-0").is_file() && records.join("slot-1").is_file());
        assert!(
            File::open(records.join("slot-0"))
                .unwrap()
                .try_lock()
                .is_err(),
            "a held slot is locked"
        );
        drop(second);
        assert!(
            File::open(records.join("slot-1"))
                .unwrap()
                .try_lock()
                .is_ok()
        );

        // A clab that died with a command running: its slot holds its record, unlocked.
        let dead = 4_000_000u32 - 11;
        let prefix = format!("{dead}.5.");
        let mut left = tagged_group(&prefix);
        let group = left.id() as i32;
        fs::write(
            records.join("slot-1"),
            format!("clab-processes 1\n{dead} 5 {prefix}\n{group}\n"),
        )
        .unwrap();
        // A newer clab's record is neither reaped nor overwritten; a torn header is emptied.
        fs::write(records.join("slot-2"), "clab-processes 2\nwhatever\n").unwrap();
        fs::write(records.join("slot-3"), "clab-proc").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let third = claim(&records).unwrap();
        assert_eq!(left.wait().unwrap().signal(), Some(9), "reaped on the way");
        assert_eq!(fs::read(records.join("slot-1")).unwrap(), b"", "and taken");
        assert_eq!(
            fs::read_to_string(records.join("slot-2")).unwrap(),
            "clab-processes 2\nwhatever\n"
        );
        let fourth = claim(&records).unwrap();
        assert_eq!(
            fs::read(records.join("slot-3")).unwrap(),
            b"",
            "torn: emptied"
        );
        assert!(
            File::open(records.join("slot-3"))
                .unwrap()
                .try_lock()
                .is_err(),
            "and taken, past the newer clab's slot"
        );
        drop((mine, third, fourth));
    }

    #[test]
    fn reaping_empties_a_dead_clabs_slot_and_leaves_a_held_one_alone() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join(RECORD_DIR);
        fs::create_dir_all(&records).unwrap();
        let dead = 4_000_000u32 - 13;
        let prefix = format!("{dead}.5.");
        let mut left = tagged_group(&prefix);
        let group = left.id() as i32;
        let record = format!("clab-processes 1\n{dead} 5 {prefix}\n{group}\n");
        fs::write(records.join("slot-0"), &record).unwrap();
        // The same record in a slot someone holds: that clab is alive.
        fs::write(records.join("slot-1"), &record).unwrap();
        let held = File::open(records.join("slot-1")).unwrap();
        held.lock().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (reaped, _) = reap_stale(dir.path());
        assert_eq!(reaped.clabs, [dead]);
        assert!(reaped.killed >= 1, "{reaped:?}");
        assert_eq!(left.wait().unwrap().signal(), Some(9));
        assert_eq!(fs::read(records.join("slot-0")).unwrap(), b"");
        assert_eq!(fs::read_to_string(records.join("slot-1")).unwrap(), record);
        assert_eq!(reap_stale(dir.path()).0, Reaped::default(), "nothing twice");
    }

    #[test]
    fn the_processes_of_a_dead_clab_are_reaped_and_a_live_ones_are_not_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join(RECORD_DIR);
        fs::create_dir_all(&records).unwrap();
        // A dead clab: a pid that is not running, with tags that name it.
        let dead = 4_000_000u32 - 7;
        let prefix = format!("{dead}.5.");
        let mut left = tagged_group(&prefix);
        let group = left.id() as i32;
        // In the previous layout: a file named by the clab's pid.
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
        let (reaped, _) = reap_stale(dir.path());
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
