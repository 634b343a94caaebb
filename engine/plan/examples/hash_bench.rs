//! Hashing benchmark for the input index and the stat cache (see `docs/cache.md`).
//!
//! ```text
//! hash_bench gen DIR FILES SIZE     write FILES files of SIZE bytes under DIR (1000 per dir)
//! hash_bench run DIR CACHE [PAT…]   cold pass (empty stat cache), flush, reopen, warm pass
//! hash_bench scale DIR CACHE GLOB 2,000 tasks × (20 own files + a shared GLOB) on a `gen` tree
//! hash_bench threshold DIR          time read+hash vs mmap+rayon for several file sizes
//! ```
//!
//! "Cold" means an empty stat cache; the files themselves are in the page cache (dropping it
//! would disturb other work on a shared machine).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clab_plan::inputs::InputIndex;
use clab_store::Store;
use clab_store::stat_cache::hash_contents;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") if args.len() == 4 => generate(Path::new(&args[1]), &args[2], &args[3]),
        Some("run") if args.len() >= 3 => run(Path::new(&args[1]), Path::new(&args[2]), &args[3..]),
        Some("scale") if args.len() == 4 => {
            scale(Path::new(&args[1]), Path::new(&args[2]), &args[3])
        }
        Some("threshold") if args.len() == 2 => threshold(Path::new(&args[1])),
        _ => Err(
            "usage: hash_bench gen DIR FILES SIZE | run DIR CACHE [PATTERN…] | threshold DIR"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<clab_store::ByteSize>()
        .map(|s| s.0)
        .map_err(|e| e.to_string())
}

fn generate(dir: &Path, files: &str, size: &str) -> Result<(), String> {
    let files: u64 = files
        .parse()
        .map_err(|_| format!("bad file count `{files}`"))?;
    let size = parse_size(size)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buffer = vec![0u8; size as usize];
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i / 1000));
        fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
        for chunk in buffer.chunks_mut(8) {
            // xorshift: cheap, incompressible-looking content, different per file.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let mut f =
            fs::File::create(sub.join(format!("f{i:06}.bin"))).map_err(|e| e.to_string())?;
        f.write_all(&buffer).map_err(|e| e.to_string())?;
    }
    println!(
        "wrote {files} files of {size} bytes under {}",
        dir.display()
    );
    Ok(())
}

fn run(dir: &Path, cache: &Path, patterns: &[String]) -> Result<(), String> {
    let patterns: Vec<String> = if patterns.is_empty() {
        vec!["**".to_owned()]
    } else {
        patterns.to_vec()
    };
    let _ = fs::remove_dir_all(cache);
    let timed = |label: &str, store: &Store| -> Result<(), String> {
        let stat = store.stat_cache().map_err(|e| e.to_string())?;
        let start = Instant::now();
        let index = InputIndex::build(dir, &patterns, stat).map_err(|e| e.to_string())?;
        let elapsed = start.elapsed();
        let bytes: u64 = index.files().iter().map(|f| f.size).sum();
        let counts = stat.counts();
        println!(
            "{label:<5} {:>8} files {:>10.1} MiB  {:>8.1} ms (walk {:.1}, hash {:.1})  {:>8.1} MiB/s  hashed={} reused={}",
            index.files().len(),
            bytes as f64 / 1048576.0,
            elapsed.as_secs_f64() * 1000.0,
            index.stats().walk_time.as_secs_f64() * 1000.0,
            index.stats().hash_time.as_secs_f64() * 1000.0,
            bytes as f64 / 1048576.0 / elapsed.as_secs_f64(),
            counts.hashed,
            counts.reused
        );
        Ok(())
    };
    {
        let store = Store::open(cache.to_path_buf())
            .map_err(|e| e.to_string())?
            .store;
        timed("cold", &store)?;
        let start = Instant::now();
        let n = store.flush_stat_cache().map_err(|e| e.to_string())?;
        println!(
            "flush {n} stat entries: {:.1} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
    let start = Instant::now();
    let store = Store::open(PathBuf::from(cache))
        .map_err(|e| e.to_string())?
        .store;
    println!(
        "reopen (quick_check): {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let start = Instant::now();
    let loaded = store.stat_cache().map_err(|e| e.to_string())?.len();
    println!(
        "load {loaded} stat entries: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    timed("warm", &store)?;
    Ok(())
}

fn scale(dir: &Path, cache: &Path, shared: &str) -> Result<(), String> {
    let _ = fs::remove_dir_all(cache);
    let tasks: Vec<Vec<String>> = (0..2000u64)
        .map(|t| {
            let mut patterns: Vec<String> = (0..20)
                .map(|j| {
                    let i = t * 20 + j;
                    format!("d{:03}/f{i:06}.bin", i / 1000)
                })
                .collect();
            patterns.push(shared.to_owned());
            patterns.push("!d000/f000999.bin".to_owned());
            patterns
        })
        .collect();
    let store = Store::open(cache.to_path_buf())
        .map_err(|e| e.to_string())?
        .store;
    let stat = store.stat_cache().map_err(|e| e.to_string())?;
    for label in ["cold", "warm"] {
        let start = Instant::now();
        let index =
            InputIndex::build(dir, tasks.iter().flatten(), stat).map_err(|e| e.to_string())?;
        let built = start.elapsed();
        let mut selected = 0;
        for task in &tasks {
            selected += index.select(task).map_err(|e| e.to_string())?.len();
        }
        println!(
            "{label}: build {:.1} ms (walk {:.1}, hash {:.1}), select 2000 tasks {:.1} ms, {selected} inputs, {} distinct files",
            built.as_secs_f64() * 1000.0,
            index.stats().walk_time.as_secs_f64() * 1000.0,
            index.stats().hash_time.as_secs_f64() * 1000.0,
            (start.elapsed() - built).as_secs_f64() * 1000.0,
            index.files().len(),
        );
    }
    Ok(())
}

fn threshold(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    println!("{:>10} {:>14} {:>14}", "size", "read (MiB/s)", "mmap+rayon");
    for size in [
        16u64 << 10,
        64 << 10,
        256 << 10,
        512 << 10,
        1 << 20,
        2 << 20,
        4 << 20,
        64 << 20,
    ] {
        let path = dir.join(format!("t{size}"));
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &data).map_err(|e| e.to_string())?;
        let rounds = ((256u64 << 20) / size).clamp(4, 20_000);
        let start = Instant::now();
        for _ in 0..rounds {
            hash_contents(&path, 0).map_err(|e| e.to_string())?;
        }
        let read = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..rounds {
            hash_contents(&path, u64::MAX).map_err(|e| e.to_string())?;
        }
        let mmap = start.elapsed().as_secs_f64();
        let mib = (size * rounds) as f64 / 1048576.0;
        println!("{size:>10} {:>14.0} {:>14.0}", mib / read, mib / mmap);
    }
    Ok(())
}
