//! Parsing and checking of command-line values.

use std::time::Duration;

use anyhow::{Context, bail};
use gonka_kernels::{Hash32, ModelConfig, Precision};

/// A 32-byte value in hex (a Sprint seed).
pub fn hex32(s: &str) -> anyhow::Result<Hash32> {
    let b = hex::decode(s.trim_start_matches("0x")).context("seed must be hex")?;
    b.try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("seed must be 32 bytes (64 hex digits), got {}", b.len()))
}

/// A 48-byte compressed public key in hex.
pub fn hex48(s: &str) -> anyhow::Result<[u8; 48]> {
    let b = hex::decode(s.trim_start_matches("0x")).context("public key must be hex")?;
    b.try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("public key must be 48 bytes (96 hex digits), got {}", b.len()))
}

/// A named model config.
pub fn config(s: &str) -> anyhow::Result<ModelConfig> {
    Ok(s.parse::<ModelConfig>()?)
}

/// `f32` or `bf16`.
pub fn precision(s: &str) -> anyhow::Result<Precision> {
    match s {
        "f32" => Ok(Precision::F32),
        "bf16" => Ok(Precision::Bf16),
        _ => bail!("precision must be f32 or bf16, got {s:?}"),
    }
}

/// Name of a precision.
pub fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::Bf16 => "bf16",
    }
}

/// `A-B`, both included.
pub fn nonce_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s.split_once('-').context("nonce range must be A-B (both included)")?;
    let a: u64 = a.trim().parse().context("range start")?;
    let b: u64 = b.trim().parse().context("range end")?;
    if b < a {
        bail!("nonce range {a}-{b} is empty");
    }
    Ok((a, b))
}

/// `500ms`, `30s`, `2m`, `1h`, or plain seconds.
pub fn duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 =
        num.parse().with_context(|| format!("duration {s:?} must be a number with a unit (30s, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => bail!("unknown duration unit {unit:?} (use ms, s, m or h)"),
    };
    if !(0.0..1e7).contains(&secs) {
        bail!("duration {s:?} out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Worker threads: the given number, else every core.
pub fn threads(t: Option<usize>) -> usize {
    t.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_rejects_bad_ones() {
        assert_eq!(duration("30s").expect("30s"), Duration::from_secs(30));
        assert_eq!(duration("2m").expect("2m"), Duration::from_secs(120));
        assert_eq!(duration("250ms").expect("ms"), Duration::from_millis(250));
        assert!(duration("3 parsecs").is_err());
        assert_eq!(nonce_range("0-199").expect("range"), (0, 199));
        assert!(nonce_range("5-4").is_err());
        assert!(hex32("00").is_err());
        assert!(hex32(&"ab".repeat(32)).is_ok());
        assert!(config("huge").is_err());
    }
}
