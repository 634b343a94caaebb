//! A detector for API keys pasted where a name belongs: the syntax stage rejects a literal
//! key written in `tasks.kdl` (`api-key-env "sk-…"`), and the LLM settings loader
//! (`engine::exec::llm`) applies the same test to every settings layer.

/// Whether `value` looks like a literal API key rather than a name, URL or model.
///
/// True for the well-known prefixes (`sk-…` as used by OpenAI, `sk-ant-…` by Anthropic, and a
/// few others such as `gsk_`, `hf_`, `ghp_`, `AIza`) followed by a long token, and for any
/// long token (32+ characters of letters, digits, `-`, `_`, `.`) that mixes letters and digits
/// with high entropy (over 3.5 bits per character); pure hex strings (hashes, commit ids) are
/// left alone. Environment variable names
/// (`OPENAI_API_KEY`), URLs and model names (`gpt-4o-mini`) are not keys.
pub fn looks_like_api_key(value: &str) -> bool {
    let value = value.trim();
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == ':')
    {
        return false;
    }
    let token_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !token_chars {
        return false;
    }
    const PREFIXES: [&str; 8] = [
        "sk-ant-", "sk-proj-", "sk-", "gsk_", "hf_", "ghp_", "xai-", "AIza",
    ];
    if let Some(prefix) = PREFIXES.iter().find(|prefix| value.starts_with(**prefix)) {
        return value.len() >= prefix.len() + 16;
    }
    if value.len() < 32 {
        return false;
    }
    // Pure hex is a content hash or a commit id far more often than a key.
    if value.chars().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    let has_digit = value.chars().any(|c| c.is_ascii_digit());
    let has_alpha = value.chars().any(|c| c.is_ascii_alphabetic());
    has_digit && has_alpha && shannon_entropy(value) > 3.5
}

/// Bits of entropy per character of `value`'s character distribution.
fn shannon_entropy(value: &str) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let len = value.chars().count() as f64;
    counts
        .values()
        .map(|&n| {
            let p = n as f64 / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_detection_table() {
        let cases = [
            ("sk-proj-Abc123def456ghi789jkl012mno345", true),
            ("sk-ant-api03-abcdefghijklmnop1234567890", true),
            ("sk-1234567890abcdefghij", true),
            ("gsk_0123456789abcdefABCDEF", true),
            ("AIzaSyA1234567890abcdefghijklmn", true),
            ("Xq7vT2mLp9RzK4wN8sYb3HjC6dFg1QaE", true),
            ("f3a9c2e8b7d14a6f9e0c5b2a8d7e6f1c4b3a2d9e", false),
            ("sk-short", false),
            ("OPENAI_API_KEY", false),
            ("ANTHROPIC_API_KEY", false),
            ("gpt-4o-mini", false),
            ("claude-3-5-sonnet-20241022", false),
            ("https://api.openai.com/v1", false),
            ("http://localhost:11434/v1", false),
            ("llm -m gpt-4o-mini", false),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", false),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(looks_like_api_key(value), expected, "{value}");
        }
    }
}
