//! [`Watchdog`]: a small process that outlives clab only to kill what clab's commands left,
//! however clab ended — `kill -9` included (issue 18).
//!
//! Started once per clab process, [`START_AFTER`] into a run that runs commands, by the wait
//! of a command running then (a run over sooner costs no process and no thread; a kill
//! sooner is left to the next run's reaping): `/bin/sh` in
//! a process group of its own (Ctrl-C at the terminal does not reach it), its stdin the read
//! end of a pipe whose write end only clab holds (close-on-exec: no command inherits it).
//! When clab ends, the
//! kernel closes that end, the script's `read` sees end-of-file, and it kills every process
//! whose environment holds a tag of this clab (`process_tag`), with the group each leads, in
//! up to three passes (a process forked during a pass is found by the next). clab writes
//! `idle` when a run has ended and killed its leftovers, and `busy` before the next command:
//! a watchdog whose last line was `idle` exits at once, without searching `/proc`.
//!
//! Why not `PR_SET_PDEATHSIG` on each command: it must be set in the child between `fork` and
//! `exec`, and a `pre_exec` hook makes the standard library fork instead of `posix_spawn` —
//! measured on the project's 2-core VM: 1.7 → 6.5 ms per command with 20 MB resident, 1.9 →
//! 19 ms with 200 MB. And it would reach the shell only, not the processes of its group. The
//! watchdog costs one process per clab and none per command. What it cannot cover (it was
//! killed too, or could not start) the next clab reaps from the record (`process_record`).

use std::{
    io::{PipeWriter, Write},
    process::{Command, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::{Duration, Instant},
};

use crate::process_tag::{ProcessTag, TAG_VAR};

/// The script: wait for clab to end, then kill its tagged processes.
const SCRIPT: &str = r#"state=idle
while read -r line; do state=$line; done
[ "$state" = idle ] && exit 0
for pass in 1 2 3; do
  found=
  for f in $(grep -lsaF -e "$1" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}; p=${p%/environ}
    kill -KILL -- "-$p" 2>/dev/null
    kill -KILL "$p" 2>/dev/null && found=1
  done
  [ -n "$found" ] || exit 0
done"#;

/// The running watchdog: the write end of its pipe, held until clab exits.
pub struct Watchdog {
    pipe: PipeWriter,
    busy: bool,
}

/// The watchdog, once started, and when it is due to start.
struct Slot {
    dog: Option<Watchdog>,
    /// When a run that runs commands wants it started (by the command waiting then).
    due: Option<Instant>,
    /// A start was made (the watchdog may have failed to start: it is not tried again).
    started: bool,
}

static SLOT: Mutex<Slot> = Mutex::new(Slot {
    dog: None,
    due: None,
    started: false,
});

fn slot() -> MutexGuard<'static, Slot> {
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a run goes before its watchdog starts: a `kill -9` sooner is left to the next
/// run's reaping, and a short run (a save hook's) costs no process.
pub const START_AFTER: Duration = Duration::from_millis(100);

/// Whether a command runs (or is about to).
static WANT_BUSY: AtomicBool = AtomicBool::new(false);

/// The watchdog's pid, once it runs (0 before).
static PID: AtomicI32 = AtomicI32::new(0);

impl Watchdog {
    /// Have the watchdog start [`START_AFTER`] from now if a command runs then, unless it
    /// started already: the command waiting at that moment starts it ([`Watchdog::due`]), so
    /// the first command does not wait for it, a run over in less time never starts one, and
    /// no thread sleeps for it (Linux; elsewhere nothing). A watchdog that cannot start is no
    /// error: the next clab's reaping covers a crash.
    pub fn start_soon() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let mut slot = slot();
        if !slot.started && slot.due.is_none() {
            slot.due = Some(Instant::now() + START_AFTER);
        }
    }

    /// When a waiting command should call [`Watchdog::start_if_due`]: `None` when nothing
    /// is to start.
    pub fn due() -> Option<Instant> {
        // Locked: being started, or told `idle` — nothing for this waiter to do.
        SLOT.try_lock().ok().and_then(|slot| slot.due)
    }

    /// Start the watchdog if it is due and a command runs. Called by a command's wait.
    pub fn start_if_due() {
        let mut slot = slot();
        match slot.due {
            Some(due) if !slot.started && Instant::now() >= due => {}
            _ => return,
        }
        slot.due = None;
        if !WANT_BUSY.load(Ordering::SeqCst) {
            return;
        }
        slot.started = true;
        slot.dog = Watchdog::start();
        if let Some(dog) = slot.dog.as_mut() {
            dog.mark(true);
        }
    }

    /// A command is about to start: the watchdog must run (started now, when no run asked
    /// for it: a watch-mode service) and know clab is busy.
    pub fn ensure() {
        if !cfg!(target_os = "linux") {
            return;
        }
        WANT_BUSY.store(true, Ordering::SeqCst);
        let mut slot = slot();
        if !slot.started && slot.due.is_none() {
            slot.started = true;
            slot.dog = Watchdog::start();
        }
        if let Some(dog) = slot.dog.as_mut() {
            dog.mark(true);
        }
    }

    /// Tell the watchdog whether clab is busy, unless it knows.
    fn mark(&mut self, busy: bool) {
        if self.busy != busy {
            self.busy = busy;
            let line: &[u8] = if busy { b"busy\n" } else { b"idle\n" };
            let _ = (&self.pipe).write_all(line);
        }
    }

    /// The watchdog's pid, when it runs: a child of clab that is no command's leftover.
    pub fn pid() -> Option<i32> {
        Some(PID.load(Ordering::SeqCst)).filter(|&pid| pid > 0)
    }

    /// No command runs and none left anything running: if clab ends now, there is nothing
    /// for the watchdog to do.
    pub fn idle() {
        let mut slot = slot();
        WANT_BUSY.store(false, Ordering::SeqCst);
        if let Some(dog) = slot.dog.as_mut() {
            dog.mark(false);
        }
        if !slot.started {
            // Not due any more: the next run that runs commands asks again.
            slot.due = None;
        }
    }

    fn start() -> Option<Watchdog> {
        let (reader, writer) = std::io::pipe().ok()?;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("clab-watchdog")
            .arg(format!("{TAG_VAR}={}", ProcessTag::prefix()))
            .stdin(reader)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own environment must not hold the tag it looks for.
            .env_remove(TAG_VAR)
            .process_group(0);
        let mut child = command.spawn().ok()?;
        drop(command);
        PID.store(child.id() as i32, Ordering::SeqCst);
        // When clab exits it is re-parented; until then it waits in `read`. Its status is
        // collected if it ends early (no zombie in watch mode).
        std::thread::Builder::new()
            .name("clab-watchdog-wait".into())
            .spawn(move || {
                let _ = child.wait();
            })
            .ok()?;
        Some(Watchdog {
            pipe: writer,
            busy: false,
        })
    }
}

use std::os::unix::process::CommandExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_kills_what_carries_the_tag_once_its_pipe_closes() {
        // The script itself, against a process tagged with a made-up prefix.
        let prefix = format!("{TAG_VAR}=999999.1.");
        let mut victim = Command::new("/bin/sh")
            .args(["-c", "sleep 30"])
            .env(TAG_VAR, "999999.1.7")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut bystander = Command::new("/bin/sh")
            .args(["-c", "sleep 30"])
            .env(TAG_VAR, "999999.2.7")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (reader, mut writer) = std::io::pipe().unwrap();
        let mut dog = Command::new("/bin/sh")
            .args(["-c", SCRIPT, "clab-watchdog", &prefix])
            .stdin(reader)
            .spawn()
            .unwrap();
        writer.write_all(b"busy\n").unwrap();
        drop(writer);
        dog.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(victim.wait().unwrap().signal(), Some(9));
        assert_eq!(bystander.try_wait().unwrap(), None, "a stranger was killed");
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }

    #[test]
    fn an_idle_watchdog_kills_nothing() {
        let prefix = format!("{TAG_VAR}=999998.1.");
        let mut left = Command::new("/bin/sh")
            .args(["-c", "sleep 30"])
            .env(TAG_VAR, "999998.1.1")
            .spawn()
            .unwrap();
        let (reader, mut writer) = std::io::pipe().unwrap();
        let mut dog = Command::new("/bin/sh")
            .args(["-c", SCRIPT, "clab-watchdog", &prefix])
            .stdin(reader)
            .spawn()
            .unwrap();
        writer.write_all(b"busy\nidle\n").unwrap();
        drop(writer);
        assert!(dog.wait().unwrap().success());
        assert_eq!(left.try_wait().unwrap(), None);
        left.kill().unwrap();
        left.wait().unwrap();
    }
}
