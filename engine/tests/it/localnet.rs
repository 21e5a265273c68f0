//! A local network of four `gonka-node` processes on loopback: it finalizes
//! blocks through two epochs with Sprints while one host is killed with
//! SIGKILL and restarted (it catches up), one is frozen and thawed (it
//! rejoins and agrees on the state root), a peer sends garbage (it is
//! banned), and a request through one host's API is executed by another and
//! settled on chain.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gonka_engine::node::config::{NodeConfig, write_localnet};

const HOSTS: usize = 4;

struct Host {
    config: PathBuf,
    child: Option<Child>,
}

/// Status lines of every host: (host, height, root prefix).
type Lines = mpsc::Receiver<(usize, u64, String)>;

fn spawn(i: usize, config: &Path, lines: &mpsc::Sender<(usize, u64, String)>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("node.log"))
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gonka-node"))
        .args(["run", "--stop-on-stdin-eof", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("gonka-node starts");
    let out = child.stdout.take().expect("stdout");
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"block")
                && let Some(h) = words.get(1).and_then(|h| h.parse().ok())
            {
                let root = words.last().map_or(String::new(), |r| r.to_string());
                if lines.send((i, h, root)).is_err() {
                    return;
                }
            }
        }
    });
    child
}

/// Collects status lines until `done` holds or `limit` passes.
fn wait(
    lines: &Lines,
    seen: &mut BTreeMap<(usize, u64), String>,
    limit: Duration,
    done: impl Fn(&BTreeMap<(usize, u64), String>) -> bool,
) -> bool {
    let until = Instant::now() + limit;
    while !done(seen) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if let Ok((i, h, root)) = lines.recv_timeout(left.min(Duration::from_millis(200))) {
            seen.insert((i, h), root);
        }
    }
    true
}

fn top(seen: &BTreeMap<(usize, u64), String>, host: usize) -> Option<u64> {
    seen.keys().filter(|(i, _)| *i == host).map(|(_, h)| *h).max()
}

/// One HTTP/1.1 request on loopback; returns (status, body).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("API connects");
    s.set_read_timeout(Some(Duration::from_secs(200))).expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("request sent");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("response read");
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

#[cfg(unix)]
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} failed");
}

#[test]
#[cfg(unix)]
fn a_local_network_survives_a_kill_a_freeze_and_garbage_and_serves_a_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base_port = 21000 + (std::process::id() % 2000) as u16 * 4;
    let configs = write_localnet(dir.path(), HOSTS, base_port).expect("localnet written");
    println!("localnet in {} from port {base_port}", dir.path().display());
    let (tx, lines) = mpsc::channel();
    let mut hosts: Vec<Host> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| Host { config: c.clone(), child: Some(spawn(i, c, &tx)) })
        .collect();
    let mut seen = BTreeMap::new();
    let reached = |h: u64| move |s: &BTreeMap<(usize, u64), String>| top(s, 0).is_some_and(|t| t >= h);
    assert!(wait(&lines, &mut seen, Duration::from_secs(120), reached(10)), "no blocks: see node.log files");

    // Garbage at host 0's peer port: banned, and the network goes on.
    let node0 = NodeConfig::read(&configs[0]).expect("config");
    let mut g = TcpStream::connect(node0.listen).expect("peer port connects");
    let _ = g.write_all(&[0xff; 4096]);
    drop(g);

    // Host 3 is killed (SIGKILL) and restarted ten blocks later.
    let mut victim = hosts[3].child.take().expect("running");
    signal(&victim, "-KILL");
    let _ = victim.wait();
    let killed_at = top(&seen, 0).unwrap_or(0);
    assert!(
        wait(&lines, &mut seen, Duration::from_secs(120), reached(killed_at + 10)),
        "stalled without host 3"
    );
    hosts[3].child = Some(spawn(3, &hosts[3].config, &tx));

    // Host 2 is frozen (SIGSTOP) for a few seconds, then thawed.
    let frozen = hosts[2].child.as_ref().expect("running");
    signal(frozen, "-STOP");
    std::thread::sleep(Duration::from_secs(4));
    signal(frozen, "-CONT");

    // Requests through host 0's API until one is executed by another host.
    let body = r#"{"model":"tiny-chat","messages":[{"role":"user","content":"hello"}],"max_tokens":16}"#;
    let mut task = String::new();
    for attempt in 0..8 {
        let (status, reply) = http(node0.api, "POST", "/v1/chat/completions", "sk-local-0", body);
        if status == 503 && reply.contains("expired") {
            // Its executor was the host still catching up: the request expired and was refunded.
            println!("request {attempt}: {reply}");
            continue;
        }
        assert_eq!(status, 200, "completion {attempt}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).expect("JSON reply");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string();
        assert!(!content.is_empty(), "an empty completion: {reply}");
        task = v["id"].as_str().and_then(|id| id.strip_prefix("cmpl-")).expect("a task id").to_string();
        let (_, t) = http(node0.api, "GET", &format!("/v1/chain/tasks/{task}"), "sk-local-0", "");
        let tv: serde_json::Value = serde_json::from_str(&t).expect("task JSON");
        println!("request {attempt}: task {task} executed by host {}: {content:?}", tv["executor"]);
        if tv["executor"] != 0 {
            break;
        }
    }

    // Two full epochs, and every host at the same root where they overlap.
    let epoch = gonka_engine::node::config::localnet_params().epoch_blocks;
    let all_past = |h: u64| {
        move |s: &BTreeMap<(usize, u64), String>| (0..HOSTS).all(|i| top(s, i).is_some_and(|t| t >= h))
    };
    assert!(
        wait(&lines, &mut seen, Duration::from_secs(300), all_past(2 * epoch + 2)),
        "not every host passed two epochs: {:?}",
        (0..HOSTS).map(|i| top(&seen, i)).collect::<Vec<_>>()
    );
    let (status, t) = http(node0.api, "GET", &format!("/v1/chain/tasks/{task}"), "sk-local-0", "");
    println!("task {task}: {status} {t}");
    for h in 0..=2 * epoch {
        let roots: Vec<&String> = (0..HOSTS).filter_map(|i| seen.get(&(i, h))).collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "height {h}: roots differ {roots:?}");
    }
    // The task, executed by another host, settled.
    let tv: serde_json::Value = serde_json::from_str(&t).expect("task JSON");
    assert_eq!(tv["status"], "settled", "task {t}");
    assert_ne!(tv["executor"], 0, "eight requests in a row were executed by host 0 itself");
    let log0 = std::fs::read_to_string(configs[0].with_file_name("node.log")).unwrap_or_default();
    assert!(log0.to_lowercase().contains("ban"), "host 0 logged no ban of the garbage peer");
    for h in &mut hosts {
        if let Some(mut c) = h.child.take() {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}
