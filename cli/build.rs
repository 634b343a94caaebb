//! Links the `clab` binary as a position-dependent executable on Linux.
//!
//! In: the target cargo builds for. Out: a `-no-pie` link argument for this package's
//! binaries (not its tests, not other crates: their code is unchanged, position-independent
//! code links into either kind of executable). Why: a PIE has every pointer in its static data
//! (vtables, `&'static str`s in tables: ~43,000 relative relocations in clab) patched by the
//! dynamic loader at each start, which copies each page it patches — ~180 page faults and
//! ~0.4 ms of every `clab` command, a fifth of `clab run` of a trivial task. Without PIE the
//! linker resolves them once. The cost is that the binary's own code and data are not
//! placed at a random address (the libraries, stack and heap still are).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
}
