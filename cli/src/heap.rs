//! clab's heap: the C library's `malloc` for a small run, mimalloc once a large graph is ahead.
//!
//! mimalloc builds a large graph fast (glibc's allocator was a third of the instructions of
//! `clab list` on 10,000 tasks: 25 → 48 ms with glibc alone), but it costs a short run more
//! than the run's whole heap: its start-up reads ~40 options from the environment (~150 k
//! instructions) and `/proc/sys/vm/overcommit_memory` and
//! `/sys/kernel/mm/transparent_hugepage/enabled` (two opens of kernel files, the dearest
//! system calls of a trivial run), and its first allocation reserves an arena, writes its
//! bitmaps and faults in fresh 64 KiB pages (a run of `echo hi`: 377 page faults against 283
//! with glibc's `malloc`).
//!
//! So [`Heap`] hands out the C library's memory until [`for_large_graph`] is called — when
//! the root tasks file, as it is read (`Project::with_text_hook`), says the graph will be
//! large ([`large_graph_ahead`]: a file of 128 KiB or more, or a workspace root) — and
//! mimalloc's from then on. Neither asks for transparent huge pages: mimalloc is built
//! with `MI_NO_THP` (`.cargo/config.toml`). On a virtual machine that hands free memory back
//! to its host (a CI runner, this project's), each fresh 2 MiB page is faulted in from the
//! host — ~5 ms of zeroing each — so a `clab list` of 10,000 tasks run once after a pause
//! took 110–190 ms with them and 40–50 ms without, and a fresh checkout's restore from a
//! remote cache ~995 → ~800 ms (medians of 8 alternating runs). Run back to back, as a
//! benchmark loop does, the host pages are reused and huge pages looked better (`list`
//! 34.7 → 42.6 ms without them): that loop is not how a user runs clab. mimalloc is built
//! without its constructor (`MI_PRIM_HAS_PROCESS_ATTACH`,
//! set for C code in `.cargo/config.toml`) and started by the switch; built with its
//! constructor (a `CFLAGS` of the builder's own), it started before `main` and the switch
//! only sets the flag. A block goes back to the allocator that made it: after the switch, a
//! free asks mimalloc whether the block lies in its heap (`mi_is_in_heap_region`, a page-map
//! lookup); before it, mimalloc has made none, and nothing is asked.
//!
//! Why not a crate: this is a dispatch between two allocators the program already links,
//! keyed by a flag that is set once; no crate chooses an allocator from a run's size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Whether new blocks come from mimalloc (set once, never cleared).
static LARGE: AtomicBool = AtomicBool::new(false);

/// A tasks file at least this large builds a graph worth mimalloc (a 10,000 task file is
/// ~0.8 MB, the bench's 2,000-task one ~0.4 MB; a hand-written file is a few KB).
const LARGE_TASKS_FILE: u64 = 128 * 1024;

/// The global allocator: see the module documentation.
pub(crate) struct Heap;

impl Heap {
    /// Whether `ptr`, a block this allocator handed out, is mimalloc's.
    fn is_mimallocs(ptr: *mut u8) -> bool {
        // SAFETY: a lookup of an address in mimalloc's page map; it reads no memory at `ptr`.
        LARGE.load(Ordering::Acquire)
            && unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr.cast_const().cast()) }
    }
}

// SAFETY: every block is allocated, grown and freed by one of two allocators that uphold the
// `GlobalAlloc` contract, and always the one that allocated it (`is_mimallocs`): a block
// from before the switch is the C library's, and mimalloc answers for its own after it.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            if LARGE.load(Ordering::Acquire) {
                MiMalloc.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            if LARGE.load(Ordering::Acquire) {
                MiMalloc.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on to the allocator that made the block.
        unsafe {
            if Self::is_mimallocs(ptr) {
                MiMalloc.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on to the allocator that made the block (it
        // stays with it when it grows).
        unsafe {
            if Self::is_mimallocs(ptr) {
                MiMalloc.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

/// New blocks come from mimalloc from now on: a large graph is about to be built. Only the
/// main thread switches (mimalloc's start-up makes the calling thread's heap its main heap,
/// which must outlive every other thread); called elsewhere, this does nothing.
pub(crate) fn for_large_graph() {
    if !on_main_thread() {
        return;
    }
    start_mimalloc();
    // Release: a thread that sees the switch sees mimalloc started (its loads are Acquire;
    // on x86 both are plain moves).
    LARGE.store(true, Ordering::Release);
}

/// Whether this is the process's first thread.
fn on_main_thread() -> bool {
    // SAFETY: two system calls without arguments that cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

unsafe extern "C" {
    /// What mimalloc's constructor runs: its options read, its memory configuration
    /// detected, the calling thread's heap set up.
    fn _mi_auto_process_init();
    /// Whether mimalloc has been initialized (by its constructor, or lazily).
    static _mi_process_is_initialized: bool;
}

/// Initialize mimalloc now, unless its constructor already did: built with
/// `MI_PRIM_HAS_PROCESS_ATTACH` (`.cargo/config.toml`), mimalloc has none.
fn start_mimalloc() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        // SAFETY: mimalloc's own initialization, called once, before any block of mimalloc's
        // is made (`LARGE` is set after it), and skipped if it already ran.
        unsafe {
            if !_mi_process_is_initialized {
                _mi_auto_process_init();
            }
        }
    });
}

/// Switch to mimalloc ([`for_large_graph`]) if the root tasks file's `text`, just read,
/// says the graph will be large ([`large_graph_ahead`]).
pub(crate) fn for_tasks_text(text: &str) {
    if large_graph_ahead(text) {
        for_large_graph();
    }
}

/// Whether a root tasks file of `text` will build a graph worth mimalloc: a large file, or a
/// workspace root (`members`; the bench's 100 members' `clab list`: 10.3 ms with mimalloc, then
/// with huge pages, 15.3 with the C library's allocator). A guess from the text, not a parse:
/// a wrong one costs a little time, nothing else.
fn large_graph_ahead(text: &str) -> bool {
    text.len() as u64 >= LARGE_TASKS_FILE || text.contains("members")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_or_a_workspace_root_is_a_large_graph_ahead() {
        assert!(!large_graph_ahead("task \"hi\" { run \"echo hi\" }\n"));
        assert!(large_graph_ahead("members \"pkgs/*\"\n"));
        assert!(large_graph_ahead(
            &"// padding\n".repeat(LARGE_TASKS_FILE as usize / 10)
        ));
    }

    #[test]
    fn before_the_switch_blocks_are_the_c_librarys_and_a_test_thread_does_not_switch() {
        // The tests' threads are not the main thread: the switch (and every block of
        // mimalloc's, freed across it) is exercised end to end by a large graph's run
        // (`tests/run.rs`: `a_large_graph_runs_on_mimalloc_without_huge_pages…`).
        assert!(!on_main_thread());
        for_large_graph();
        assert!(
            !LARGE.load(Ordering::Acquire),
            "only the main thread switches"
        );
        let layout = Layout::from_size_align(100, 16).unwrap();
        // SAFETY: a block of `layout`, grown and freed once, by the allocator under test.
        unsafe {
            let block = Heap.alloc(layout);
            assert!(!block.is_null() && !Heap::is_mimallocs(block));
            block.write_bytes(7, 100);
            let grown = Heap.realloc(block, layout, 4096);
            assert_eq!(*grown.add(99), 7);
            Heap.dealloc(grown, Layout::from_size_align(4096, 16).unwrap());
        }
    }
}
