//! `ByteSize`: parses sizes such as `--max-size 5G`.
//!
//! In: text like `5G`, `500M`, `1.5GiB`, `2 MB`, `1048576`. Out: a byte count.
//! Units are case-insensitive. `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of
//! 1024 (as `du -h` prints them); `KB`, `MB`, `GB`, `TB` are powers of 1000; `B` or no unit is
//! bytes. A fraction is allowed with a unit (`1.5G`) and rounded down to whole bytes.

use std::fmt;
use std::str::FromStr;

/// A size in bytes, parsed from human-friendly text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a size did not parse.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("invalid size `{text}`: {reason}")]
#[diagnostic(
    code(clab::store::bad_size),
    help("write a number with an optional unit, e.g. `5G`, `500M`, `1.5GiB` or `1048576`")
)]
pub struct SizeError {
    /// The text that failed to parse.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<ByteSize, SizeError> {
        let fail = |reason| SizeError {
            text: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        if number.is_empty() {
            return Err(fail("it does not start with a number"));
        }
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(fail("unknown unit (use B, K, M, G, T, KiB…TiB or KB…TB)")),
        };
        if let Some((whole, frac)) = number.split_once('.') {
            if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
                return Err(fail("it is not a number"));
            }
            let value: f64 = number.parse().map_err(|_| fail("it is not a number"))?;
            let bytes = value * multiplier as f64;
            if !bytes.is_finite() || bytes >= u64::MAX as f64 {
                return Err(fail("it is too large"));
            }
            return Ok(ByteSize(bytes as u64));
        }
        let value: u64 = number.parse().map_err(|_| fail("it is too large"))?;
        value
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| fail("it is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// Prints with a binary unit and one decimal (`1.5 GiB`), or plain bytes under 1 KiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! size_ok {
        ($($text:expr => $bytes:expr),* $(,)?) => {
            $( assert_eq!($text.parse::<ByteSize>().unwrap(), ByteSize($bytes), "{}", $text); )*
        };
    }

    #[test]
    fn parses_units() {
        size_ok! {
            "5G" => 5 << 30,
            "500M" => 500 << 20,
            "1.5GiB" => 3 << 29,
            "1048576" => 1_048_576,
            "12b" => 12,
            "2 MB" => 2_000_000,
            "3k" => 3072,
            "1tb" => 1_000_000_000_000,
            " 7KiB " => 7168,
            "0.5K" => 512,
        }
    }

    #[test]
    fn rejects_garbage_with_reason() {
        for (text, reason) in [
            ("", "it does not start with a number"),
            ("G", "it does not start with a number"),
            ("5X", "unknown unit (use B, K, M, G, T, KiB…TiB or KB…TB)"),
            ("1.2.3G", "it is not a number"),
            ("99999999999999999999", "it is too large"),
            ("20000000T", "it is too large"),
            ("-5G", "it does not start with a number"),
        ] {
            let err = text.parse::<ByteSize>().unwrap_err();
            assert_eq!(err.reason, reason, "{text}");
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid size `{text}`"))
            );
        }
    }

    #[test]
    fn displays_binary_units() {
        assert_eq!(ByteSize(512).to_string(), "512 B");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(ByteSize(5 << 20).to_string(), "5.0 MiB");
    }
}
