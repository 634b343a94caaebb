//! Transparent huge pages for clab's heap only where they pay (Linux).
//!
//! mimalloc asks the kernel for transparent huge pages on its arenas (`MADV_HUGEPAGE`). A large
//! graph's tens of MB then fault in 2 MiB at a time (`clab list` of 10,000 tasks: 13 ms faster
//! with them), but a short run zeroes three 2 MiB pages for the few hundred KiB it uses, and
//! splits them again when mimalloc purges at exit: `clab run` of `echo hi` spent ~0.5 ms of its
//! ~4 ms on that (hyperfine and `perf stat`, `MIMALLOC_ALLOW_THP=0` against `=1`).
//!
//! So clab's heap starts without them and a run that turns out to be large asks for them:
//!
//! - `BEFORE_MIMALLOC`, a constructor that runs before mimalloc's own (ELF init priority 100;
//!   mimalloc initializes at 101, before `main` and before any allocation), sets
//!   `MIMALLOC_ALLOW_THP=0` unless the user set it. mimalloc then neither advises its arenas
//!   nor keeps the kernel from using huge pages elsewhere — except that it marks the whole
//!   process `PR_SET_THP_DISABLE`, which [`restore`] undoes.
//! - [`restore`], first thing in `main`: removes the variable and clears the process flag
//!   again (unless they were there before clab started), so that nothing of this reaches the
//!   commands clab starts.
//! - [`for_large_heap`]: advises the arena holding clab's heap after all, once the tasks file
//!   says the run will build a large graph ([`large_graph_ahead`]: a file of 128 KiB or more,
//!   or a workspace root).
//!
//! Where none of this applies (another allocator's options, a kernel without THP) each step
//! does nothing; a failure costs only the speed it was for.

/// The variable mimalloc reads its `allow_thp` option from.
const VARIABLE: &std::ffi::CStr = c"MIMALLOC_ALLOW_THP";

/// A tasks file at least this large builds a graph whose heap is worth huge pages (a 10,000
/// task file is ~0.8 MB, the bench's 2,000-task one ~0.4 MB; a hand-written file is a few KB).
const LARGE_TASKS_FILE: u64 = 128 * 1024;

/// Whether the tasks file at `path` will build a graph whose heap is worth huge pages: a
/// large file, or a workspace root (`members`; the bench's 100 members' `clab list`: 10.3 ms
/// with huge pages, 15.3 without). A guess from the text, not a parse: a wrong one costs a
/// little time, nothing else.
pub(crate) fn large_graph_ahead(path: &std::path::Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() >= LARGE_TASKS_FILE => true,
        Ok(_) => std::fs::read_to_string(path).is_ok_and(|text| text.contains("members")),
        Err(_) => false,
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::VARIABLE;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Whether [`before_mimalloc`] set the variable (the user had not).
    static SET_VARIABLE: AtomicBool = AtomicBool::new(false);
    /// Whether the process was started with huge pages disabled (`PR_GET_THP_DISABLE`).
    static STARTED_DISABLED: AtomicBool = AtomicBool::new(false);

    /// Runs before mimalloc's constructor (priority 101): the linker orders
    /// `.init_array.NNNNN` sections by priority, before plain constructors.
    #[used]
    #[unsafe(link_section = ".init_array.00100")]
    pub(super) static BEFORE_MIMALLOC: extern "C" fn() = before_mimalloc;

    extern "C" fn before_mimalloc() {
        // SAFETY: before `main`, on the only thread; prctl reads a flag, getenv and setenv
        // are libc's (initialized before the program's constructors run).
        unsafe {
            STARTED_DISABLED.store(
                libc::prctl(libc::PR_GET_THP_DISABLE) == 1,
                Ordering::Relaxed,
            );
            if libc::getenv(VARIABLE.as_ptr()).is_null()
                && libc::setenv(VARIABLE.as_ptr(), c"0".as_ptr(), 0) == 0
            {
                SET_VARIABLE.store(true, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn restore() {
        if SET_VARIABLE.load(Ordering::Relaxed) {
            // SAFETY: first thing in `main`, before any thread is started.
            unsafe { std::env::remove_var("MIMALLOC_ALLOW_THP") };
            if !STARTED_DISABLED.load(Ordering::Relaxed) {
                let _ = nix::sys::prctl::set_thp_disable(false);
            }
        }
    }

    pub(super) fn for_large_heap() {
        if !SET_VARIABLE.load(Ordering::Relaxed) {
            return;
        }
        // An allocation made now lies in the arena the graph will be built in; advise the
        // whole mapping that holds it, as mimalloc would have.
        let probe = Box::new(0u64);
        let address = &*probe as *const u64 as usize;
        let Some((start, end)) = mapping_of(address) else {
            return;
        };
        // SAFETY: advice only, on a mapping of this process's that exists.
        unsafe {
            let start = start as *mut libc::c_void;
            libc::madvise(start, end - start as usize, libc::MADV_HUGEPAGE);
            // What the start-up already touched is in 4 KiB pages, and the graph's small
            // allocations go on filling the same pages: collapse them into huge pages now
            // (Linux 6.1+; elsewhere an error, ignored). 10,000-task `graph --format json`:
            // 1,286 page faults without this, 314 with it, 205 with huge pages from the start.
            libc::madvise(
                start,
                (end - start as usize).min(COLLAPSE),
                libc::MADV_COLLAPSE,
            );
        }
    }

    /// How much of the arena's start [`for_large_heap`] collapses: the metadata and the first
    /// pages mimalloc hands out, all a process has touched before it reads its tasks file.
    const COLLAPSE: usize = 8 << 20;

    /// The bounds of the mapping that holds `address`, from `/proc/self/maps`.
    pub(super) fn mapping_of(address: usize) -> Option<(usize, usize)> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let range = line.split_whitespace().next()?;
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start..end).contains(&address).then_some((start, end))
        })
    }
}

/// Undo what made mimalloc start without huge pages, for everything but its arenas: first
/// thing in `main`.
pub(crate) fn restore() {
    #[cfg(target_os = "linux")]
    linux::restore();
}

/// Ask for huge pages on the arena of clab's heap: a large graph is about to be built.
pub(crate) fn for_large_heap() {
    #[cfg(target_os = "linux")]
    linux::for_large_heap();
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::mapping_of;
    use super::{LARGE_TASKS_FILE, large_graph_ahead};

    #[test]
    fn a_large_file_or_a_workspace_root_is_a_large_graph_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tasks.kdl");
        assert!(!large_graph_ahead(&file), "no file");
        std::fs::write(&file, "task \"hi\" { run \"echo hi\" }\n").unwrap();
        assert!(!large_graph_ahead(&file));
        std::fs::write(&file, "members \"pkgs/*\"\n").unwrap();
        assert!(large_graph_ahead(&file));
        let large = "// padding\n".repeat(LARGE_TASKS_FILE as usize / 10);
        std::fs::write(&file, large).unwrap();
        assert!(large_graph_ahead(&file));
    }

    #[test]
    fn the_mapping_of_a_heap_address_holds_it() {
        let value = Box::new(7u64);
        let address = &*value as *const u64 as usize;
        let (start, end) = mapping_of(address).expect("a heap address is mapped");
        assert!(start <= address && address < end);
        assert_eq!(mapping_of(0), None, "page zero is never mapped");
    }
}
