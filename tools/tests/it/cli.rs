//! keygen → sprint → verify on `tiny`, `pow dists` against the spec vectors,
//! and the exit status of every kind of bad file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn gonka(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gonka")).args(args).output().expect("gonka runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn vectors_dir() -> PathBuf {
    std::env::var("GONKA_SPEC_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/vectors"))
}

#[test]
fn keygen_sprint_verify_roundtrip_and_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("host.key");
    let key_s = key.to_str().expect("utf-8 path");
    let out = gonka(&["keygen", "--out", key_s]);
    assert!(out.status.success(), "keygen: {}", text(&out.stderr));
    let pk = text(&out.stdout).trim().to_owned();
    assert_eq!(pk.len(), 96, "keygen prints the 48-byte public key in hex");
    assert!(!gonka(&["keygen", "--out", key_s]).status.success(), "keygen must not overwrite a key");

    let proofs = dir.path().join("proofs.bin");
    let proofs_s = proofs.to_str().expect("utf-8 path");
    let out = gonka(&[
        "sprint",
        "--config",
        "tiny",
        "--seed",
        SEED,
        "--key",
        key_s,
        "--duration",
        "2s",
        "--out",
        proofs_s,
    ]);
    assert!(out.status.success(), "sprint: {}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(summary.contains("Sprint summary") && summary.contains("nonces/s"), "summary: {summary}");

    let out = gonka(&["verify", proofs_s, "--seed", SEED, "--sample", "20"]);
    assert!(out.status.success(), "verify: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).starts_with("valid:"), "{}", text(&out.stdout));

    // The batch records its function: v2 by default, so a v1 Sprint rejects it.
    let out = gonka(&["verify", proofs_s, "--seed", SEED, "--pow", "v1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("difficulty"), "{}", text(&out.stderr));

    // And a v1 Sprint end to end.
    let v1 = dir.path().join("v1.bin");
    let v1_s = v1.to_str().expect("utf-8 path");
    let args = [
        "sprint",
        "--pow",
        "v1",
        "--config",
        "tiny",
        "--seed",
        SEED,
        "--key",
        key_s,
        "--duration",
        "2s",
        "--out",
        v1_s,
    ];
    let out = gonka(&args);
    assert!(out.status.success(), "v1 sprint: {}", text(&out.stderr));
    let out = gonka(&["verify", v1_s, "--seed", SEED, "--pow", "v1", "--sample", "20"]);
    assert!(out.status.success(), "v1 verify: {}{}", text(&out.stdout), text(&out.stderr));

    // Another Sprint's seed: read fine, rejected (exit 1) with the reason.
    let other = "ff".repeat(32);
    let out = gonka(&["verify", proofs_s, "--seed", &other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("sprint seed"), "{}", text(&out.stderr));

    // Truncated: malformed (exit 2), one line.
    let bytes = std::fs::read(&proofs).expect("proof file");
    let cut = dir.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let out = gonka(&["verify", cut.to_str().expect("path"), "--seed", SEED]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).lines().count(), 1, "one-line reason: {}", text(&out.stderr));

    // Not a proof file at all.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"hello, this is not a proof file").expect("write");
    let out = gonka(&["verify", junk.to_str().expect("path"), "--seed", SEED]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a proof file"), "{}", text(&out.stderr));

    // A key readable by others is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = gonka(&[
            "sprint",
            "--config",
            "tiny",
            "--seed",
            SEED,
            "--key",
            key_s,
            "--duration",
            "1s",
            "--out",
            proofs_s,
        ]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("chmod 600"), "{}", text(&out.stderr));
    }
}

/// The cross-implementation interface: `nonce,dist` CSV matching the vectors.
#[test]
fn pow_dists_matches_spec_vectors() {
    let path = vectors_dir().join("tiny.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("tiny.json")).expect("json");
    let pubkey = v["pubkey"].as_str().expect("pubkey");
    let seed = v["sprint_seed"].as_str().expect("seed");
    let out = gonka(&[
        "pow", "dists", "--pow", "v1", "--config", "tiny", "--seed", seed, "--pubkey", pubkey, "--nonces",
        "0-199",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("nonce,dist"));
    let rows: Vec<(u64, f64)> = lines
        .map(|l| {
            let (n, d) = l.split_once(',').expect("two columns");
            (n.parse().expect("nonce"), d.parse().expect("dist"))
        })
        .collect();
    let want = v["nonces"].as_array().expect("nonces");
    assert_eq!(rows.len(), want.len());
    for ((n, d), w) in rows.iter().zip(want) {
        assert_eq!(*n, w["nonce"].as_u64().expect("nonce"));
        let wd = w["dist"].as_f64().expect("dist");
        assert!((d - wd).abs() < 1e-4, "nonce {n}: {d} vs {wd}");
    }
}

/// v2's cross-implementation interface: `nonce,digest` CSV matching the
/// vectors of the independent numpy implementation.
#[test]
fn pow_dists_v2_matches_v2_vectors() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernels/tests/vectors/v2/tiny.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("v2 tiny.json")).expect("json");
    let (seed, pubkey) = (v["sprint_seed"].as_str().expect("seed"), v["pubkey"].as_str().expect("pubkey"));
    let args = [
        "pow", "dists", "--pow", "v2", "--config", "tiny", "--seed", seed, "--pubkey", pubkey, "--nonces",
        "0-49",
    ];
    let out = gonka(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("nonce,digest"));
    let want = v["nonces"].as_array().expect("nonces");
    let mut rows = 0;
    for (line, w) in lines.zip(want) {
        let (n, d) = line.split_once(',').expect("two columns");
        assert_eq!(n.parse::<u64>().expect("nonce"), w["nonce"].as_u64().expect("nonce"));
        assert_eq!(d, w["digest"].as_str().expect("digest"), "digest of nonce {n}");
        rows += 1;
    }
    assert_eq!(rows, 50);
}
