//! `clab cache stats|clean|prune` and `clab history`.

use clab_graph::project::Project;
use clab_store::{Store, byte_size::ByteSize};
use std::io::Write;

use crate::{
    args::CacheCommand,
    exit::{Done, Failure},
};

/// Open the project's store for inspection (errors are final here: there is nothing to run).
pub(super) fn store(project: &Project) -> Result<Store, Failure> {
    let dir = super::cache_dir(project);
    let opened = Store::open(&dir).map_err(|err| Failure::Store(Box::new(err)))?;
    for warning in opened.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(opened.store)
}

/// `clab cache …`.
pub(super) fn cache(project: &Project, command: &CacheCommand) -> Result<Done, Failure> {
    let store = store(project)?;
    let mut out = std::io::stdout().lock();
    let fail = |err| Failure::Store(Box::new(err));
    match command {
        CacheCommand::PublicKey => return public_key(),
        CacheCommand::Stats => {
            let stats = store.stats().map_err(fail)?;
            writeln!(out, "cache:    {}", store.dir().display())?;
            writeln!(out, "entries:  {}", stats.entries)?;
            writeln!(
                out,
                "blobs:    {} ({})",
                stats.blobs,
                ByteSize(stats.blob_bytes)
            )?;
            writeln!(out, "database: {}", ByteSize(stats.db_bytes))?;
            match stats.hit_rate() {
                Some(rate) if stats.remote_hits > 0 => writeln!(
                    out,
                    "hit rate: {:.1}% ({} hits, {} of them from the remote; {} misses)",
                    rate * 100.0,
                    stats.hits,
                    stats.remote_hits,
                    stats.misses
                )?,
                Some(rate) => writeln!(
                    out,
                    "hit rate: {:.1}% ({} hits, {} misses)",
                    rate * 100.0,
                    stats.hits,
                    stats.misses
                )?,
                None => writeln!(out, "hit rate: no lookups yet")?,
            }
            remote_section(project, &store, &mut out)?;
        }
        CacheCommand::Clean => {
            let report = store.clean().map_err(fail)?;
            writeln!(out, "{report}")?;
        }
        CacheCommand::Prune { max_size } => {
            let size: ByteSize = max_size
                .parse()
                .map_err(|err: clab_store::byte_size::SizeError| Failure::Usage(err.to_string()))?;
            let report = store.prune(size.0).map_err(fail)?;
            writeln!(out, "{report}")?;
        }
    }
    for warning in store.take_warnings() {
        eprintln!("warning: {warning}");
    }
    Ok(Done::Success)
}

/// `clab cache public-key`: the public key of `CLAB_CACHE_SIGNING_KEY`, one line. The key
/// itself is never printed; a bad one is a usage error that does not quote it.
pub(super) fn public_key() -> Result<Done, Failure> {
    match clab_remote::public_key_from_env() {
        Ok(Some(line)) => {
            writeln!(std::io::stdout().lock(), "{line}")?;
            Ok(Done::Success)
        }
        Ok(None) => Err(Failure::Usage(format!(
            "`{}` is not set: it holds the base64 of a 32-byte ed25519 seed \
             (for example `openssl rand -base64 32`)",
            clab_remote::signing::SIGNING_KEY_ENV
        ))),
        Err(err) => Err(Failure::Config(miette::Report::new(err))),
    }
}

/// The remote cache part of `clab cache stats`: what is configured, and what it did in the
/// last run that used it.
fn remote_section(project: &Project, store: &Store, out: &mut impl Write) -> Result<(), Failure> {
    // A project that does not load still has a local cache to show.
    let Ok(graph) = project.load() else {
        return Ok(());
    };
    let Some(remote) = super::remote_cache(&graph)? else {
        writeln!(
            out,
            "remote:   none (`cache {{ remote … }}` or CLAB_REMOTE_CACHE)"
        )?;
        return Ok(());
    };
    let info = remote.info();
    let mode = info.read_only.map_or("read-write", |why| why.describe());
    writeln!(out, "remote:   {} ({mode})", info.url)?;
    if let Some(signer) = &info.signer {
        writeln!(out, "  signs with   {signer}")?;
    }
    match info.trusted_keys.as_slice() {
        [] => writeln!(out, "  trusts       any entry (no trusted keys)")?,
        keys => writeln!(out, "  trusts       {}", keys.join(", "))?,
    }
    let runs = store
        .recent_runs(50)
        .map_err(|err| Failure::Store(Box::new(err)))?;
    let last = runs.iter().find_map(|run| {
        let remote = run.extra.as_ref()?.get("remote")?;
        Some((run, remote.clone()))
    });
    match last {
        None => writeln!(out, "  last run     none used the remote cache yet")?,
        Some((_, remote)) => {
            let count = |name: &str| remote.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
            let misses: u64 = remote
                .get("misses")
                .and_then(|m| m.as_object())
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
            writeln!(
                out,
                "  last run     {} hits, {misses} misses, {} down in {}; {} entries ({}) up",
                count("hits"),
                ByteSize(count("bytes_down")),
                crate::render::duration(count("fetch_ms")),
                count("entries_up"),
                ByteSize(count("bytes_up")),
            )?;
        }
    }
    Ok(())
}

/// `clab history`.
pub(super) fn history(project: &Project, limit: usize) -> Result<Done, Failure> {
    let store = store(project)?;
    let runs = store
        .recent_runs(limit)
        .map_err(|err| Failure::Store(Box::new(err)))?;
    let mut out = std::io::stdout().lock();
    if runs.is_empty() {
        writeln!(out, "no runs recorded yet")?;
        return Ok(Done::Success);
    }
    writeln!(
        out,
        "{:<20} {:>4} {:>6} {:>6} {:>9}  targets",
        "when (UTC)", "ran", "cached", "failed", "time"
    )?;
    for run in runs {
        writeln!(
            out,
            "{:<20} {:>4} {:>6} {:>6} {:>9}  {}",
            format_utc(run.started_ms),
            run.ran,
            run.cached,
            run.failed,
            crate::render::duration(run.duration_ms),
            run.targets.join(" ")
        )?;
    }
    Ok(Done::Success)
}

/// `2026-11-24 06:27:52` from Unix milliseconds (civil-from-days, proleptic Gregorian).
pub(super) fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(1_795_501_672_000), "2026-11-24 06:27:52");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
