//! A local network of four `gonka-node` processes on loopback: it finalizes
//! blocks through two epochs with Sprints while one host is killed with
//! SIGKILL and restarted (it catches up), one has all its connections cut
//! for a while (it rejoins and agrees on the state root), a peer sends
//! garbage (it is banned), and a request through one host's API is executed
//! by another and settled on chain.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gonka_engine::node::config::{ModelConfig, NodeConfig, Topology, write_localnet};

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

/// The last lines of host `i`'s log, for a failure message.
fn log_tail(configs: &[PathBuf], i: usize) -> String {
    let log = std::fs::read_to_string(configs[i].with_file_name("node.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
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

/// Waits until each of `hosts` hosts passed two epochs; returns the epoch length.
fn two_epochs(lines: &Lines, seen: &mut BTreeMap<(usize, u64), String>, hosts: usize) -> u64 {
    let epoch = gonka_engine::node::config::localnet_params("tiny").epoch_blocks;
    let past =
        |s: &BTreeMap<(usize, u64), String>| (0..hosts).all(|i| top(s, i).is_some_and(|t| t > 2 * epoch + 1));
    assert!(
        wait(lines, seen, Duration::from_secs(300), past),
        "not every host passed two epochs: {:?}",
        (0..hosts).map(|i| top(seen, i)).collect::<Vec<_>>()
    );
    epoch
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

/// A TCP relay in front of one host's peer port: every connection to that
/// host goes through it, so the test can cut them all and let them back.
struct Cut {
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bumped on every cut: relays of an older generation stop.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Cut {
    fn relay(listen: std::net::TcpListener, to: std::net::SocketAddr) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let (o, g) = (Arc::clone(&open), Arc::clone(&generation));
        std::thread::spawn(move || {
            for inbound in listen.incoming().map_while(Result::ok) {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let Ok(outbound) = TcpStream::connect(to) else { continue };
                let mine = g.load(Ordering::SeqCst);
                for (mut from, mut into) in [
                    (inbound.try_clone().expect("clone"), outbound.try_clone().expect("clone")),
                    (outbound, inbound),
                ] {
                    let g = Arc::clone(&g);
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
                        let mut buf = [0u8; 16 << 10];
                        while g.load(Ordering::SeqCst) == mine {
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    if into.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => break,
                            }
                        }
                        let _ = into.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { open, generation }
    }

    /// Closes every relayed connection and refuses new ones until [`Cut::heal`].
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A peer with a real key that completes the handshake with `addr`, then
/// sends a frame of kind `kind` whose body is garbage.
fn garbage_peer(addr: std::net::SocketAddr, chain: [u8; 32], kind: u8) -> std::io::Result<()> {
    use gonka_net::peer::wire::{
        FRAME_HEADER_BYTES, Hello, KIND_ACCEPT, KIND_AUTH, KIND_HELLO, Role, encode_frame, handshake_digest,
    };
    let key = gonka_engine::crypto::HostKey::from_ikm(&[0x5a; 32]);
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let frame = |kind: u8, body: &[u8]| encode_frame(kind, body).map_err(std::io::Error::other);
    let read = |s: &mut TcpStream| -> std::io::Result<(u8, Vec<u8>)> {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        s.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(1)];
        s.read_exact(&mut body)?;
        Ok((header[4], body))
    };
    let mine = Hello {
        version: gonka_engine::node::runtime::PROTOCOL_VERSION,
        chain_id: chain,
        challenge: [0x33; 32],
        public_key: key.public_key().to_vec(),
    }
    .encode();
    s.write_all(&frame(KIND_HELLO, &mine)?)?;
    let theirs = loop {
        let (k, body) = read(&mut s)?;
        if k == KIND_HELLO {
            break body;
        }
    };
    let digest = handshake_digest(Role::Dialer, &mine, &theirs);
    let signature = key.sign(gonka_engine::crypto::Domain::PeerHandshake, &digest);
    s.write_all(&frame(KIND_AUTH, &signature)?)?;
    // Third round: each side accepts the other (this one without checking).
    s.write_all(&frame(KIND_ACCEPT, &[])?)?;
    while read(&mut s)?.0 != KIND_ACCEPT {}
    s.write_all(&frame(kind, &[0xff; 100])?)?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

#[cfg(unix)]
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} failed");
}

#[test]
#[cfg(unix)]
fn a_local_network_survives_a_kill_a_cut_and_garbage_and_serves_a_request() {
    let _heavy = crate::HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let base_port = 21000 + (std::process::id() % 2000) as u16 * 4;
    let model = ModelConfig { name: "tiny".into(), gguf: None, tiny_seed: Some(0) };
    let configs =
        write_localnet(dir.path(), HOSTS, base_port, &model, Topology::Mesh).expect("localnet written");
    println!("localnet in {} from port {base_port}", dir.path().display());
    // Host 2 dials nobody, and everyone reaches it through the relay.
    let relay_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay port");
    let relay = relay_listener.local_addr().expect("relay address");
    let mut cfg: Vec<NodeConfig> = configs.iter().map(|c| NodeConfig::read(c).expect("config")).collect();
    let host2 = cfg[2].listen;
    cfg[2].peers.clear();
    for (i, c) in cfg.iter_mut().enumerate() {
        if i != 2 {
            c.peers.retain(|p| *p != host2);
            c.peers.push(relay);
        }
    }
    for (c, path) in cfg.iter().zip(&configs) {
        c.write(path).expect("config rewritten");
    }
    let cut = Cut::relay(relay_listener, host2);
    let (tx, lines) = mpsc::channel();
    let mut hosts: Vec<Host> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| Host { config: c.clone(), child: Some(spawn(i, c, &tx)) })
        .collect();
    let mut seen = BTreeMap::new();
    let reached = |h: u64| move |s: &BTreeMap<(usize, u64), String>| top(s, 0).is_some_and(|t| t >= h);
    assert!(wait(&lines, &mut seen, Duration::from_secs(120), reached(10)), "no blocks: see node.log files");

    // Garbage at host 0's peer port, before and after a handshake: refused,
    // then the authenticated sender banned; the network goes on.
    let node0 = NodeConfig::read(&configs[0]).expect("config");
    let mut g = TcpStream::connect(node0.listen).expect("peer port connects");
    let _ = g.write_all(&[0xff; 4096]);
    drop(g);
    let chain = gonka_engine::node::config::read_genesis(&cfg[0].genesis_file).expect("genesis").digest();
    garbage_peer(node0.listen, chain, gonka_engine::node::messages::kind::TX).expect("handshake with host 0");

    // Every connection of host 2 is cut while the others go on (epoch 0:
    // equal weights, three of four decide), then allowed back.
    cut.cut();
    let cut_at = top(&seen, 0).unwrap_or(0);
    assert!(
        wait(&lines, &mut seen, Duration::from_secs(120), reached(cut_at + 20)),
        "stalled without host 2"
    );
    let behind = top(&seen, 2).unwrap_or(0);
    let ahead = top(&seen, 0).unwrap_or(0);
    println!("host 2 cut off at height {behind} while the others went on to {ahead}");
    assert!(behind + 10 < ahead, "host 2 kept deciding blocks while cut off");
    cut.heal();
    let rejoined = |h: u64| move |s: &BTreeMap<(usize, u64), String>| top(s, 2).is_some_and(|t| t >= h);
    assert!(wait(&lines, &mut seen, Duration::from_secs(120), rejoined(ahead + 5)), "host 2 did not rejoin");

    // Host 3 is killed (SIGKILL) and restarted three seconds later.
    let mut victim = hosts[3].child.take().expect("running");
    signal(&victim, "-KILL");
    let _ = victim.wait();
    let killed_at = top(&seen, 0).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    hosts[3].child = Some(spawn(3, &hosts[3].config, &tx));
    let back = |h: u64| move |s: &BTreeMap<(usize, u64), String>| top(s, 3).is_some_and(|t| t >= h);
    assert!(
        wait(&lines, &mut seen, Duration::from_secs(120), back(killed_at + 10)),
        "host 3 did not catch up (heights {:?}); its log:\n{}",
        (0..HOSTS).map(|i| top(&seen, i)).collect::<Vec<_>>(),
        log_tail(&configs, 3)
    );

    // Requests through host 0's API until one is executed by another host.
    let body =
        r#"{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":16,"temperature":0}"#;
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
    let epoch = two_epochs(&lines, &mut seen, HOSTS);
    // The task settles once its check window has passed (150 blocks here).
    let settle_by = std::time::Instant::now() + Duration::from_secs(120);
    let (status, t) = loop {
        let (status, t) = http(node0.api, "GET", &format!("/v1/chain/tasks/{task}"), "sk-local-0", "");
        if t.contains("\"settled\"") || std::time::Instant::now() > settle_by {
            break (status, t);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("task {task}: {status} {t}");
    for h in 0..=2 * epoch {
        let roots: Vec<&String> = (0..HOSTS).filter_map(|i| seen.get(&(i, h))).collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "height {h}: roots differ {roots:?}");
    }
    // The Sprints were mined (beside consensus, on the model server) and counted:
    // the weights are no longer the genesis' 10 each (a host cut off during a
    // Sprint may have none this epoch).
    let log0 = std::fs::read_to_string(configs[0].with_file_name("node.log")).unwrap_or_default();
    assert!(log0.contains("Sprint mined"), "host 0 never finished mining a Sprint");
    let (_, host_list) = http(node0.api, "GET", "/v1/chain/hosts", "sk-local-0", "");
    let hv: serde_json::Value = serde_json::from_str(&host_list).expect("hosts JSON");
    let weights: Vec<u64> =
        hv["hosts"].as_array().expect("hosts").iter().filter_map(|h| h["weight"].as_u64()).collect();
    println!("weights after two epochs: {weights:?}");
    assert!(weights.iter().any(|&w| w != 10), "weights never changed: {host_list}");
    // The task, executed by another host, settled.
    let tv: serde_json::Value = serde_json::from_str(&t).expect("task JSON");
    assert_eq!(tv["status"], "settled", "task {t}");
    assert_ne!(tv["executor"], 0, "eight requests in a row were executed by host 0 itself");
    let notable: Vec<&str> = log0.lines().filter(|l| !l.contains(" INFO ") || l.contains("peer")).collect();
    assert!(
        log0.contains("banned"),
        "host 0 did not ban the peer that sent an undecodable message:\n{}",
        notable.join("\n")
    );
    for h in &mut hosts {
        if let Some(mut c) = h.child.take() {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

/// Five hosts in a ring: each dials its successor only. Blocks, votes,
/// transactions and Sprint proof batches travel by relay; a prompt reaches
/// an executor two hops away through the drawn intermediary, both dialed from
/// their signed addresses; the request settles and every host agrees.
#[test]
#[cfg(unix)]
fn a_ring_of_hosts_relays_gossip_and_dials_the_hosts_a_task_needs() {
    const RING: usize = 5;
    let _heavy = crate::HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let base_port = 25000 + (std::process::id() % 2000) as u16 * 4;
    let model = ModelConfig { name: "tiny".into(), gguf: None, tiny_seed: Some(0) };
    let configs = write_localnet(dir.path(), RING, base_port, &model, Topology::Ring).expect("localnet");
    for (i, c) in configs.iter().enumerate() {
        let peers = NodeConfig::read(c).expect("config").peers;
        assert_eq!(peers.len(), 1, "host {i} dials its successor only: {peers:?}");
    }
    let (tx, lines) = mpsc::channel();
    let mut hosts: Vec<Child> = configs.iter().enumerate().map(|(i, c)| spawn(i, c, &tx)).collect();
    let mut seen = BTreeMap::new();
    let reached = |h: u64| move |s: &BTreeMap<(usize, u64), String>| top(s, 0).is_some_and(|t| t >= h);
    assert!(wait(&lines, &mut seen, Duration::from_secs(120), reached(5)), "no blocks: see node.log files");
    let node0 = NodeConfig::read(&configs[0]).expect("config");

    // Requests through host 0 until one runs on a host it has no link to
    // (2 or 3; host 0 links to 1 and 4).
    let body =
        r#"{"model":"tiny","messages":[{"role":"user","content":"ring"}],"max_tokens":8,"temperature":0}"#;
    let mut far = None;
    for attempt in 0..20 {
        let (status, reply) = http(node0.api, "POST", "/v1/chat/completions", "sk-local-0", body);
        assert_eq!(status, 200, "completion {attempt}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).expect("JSON reply");
        let task = v["id"].as_str().and_then(|id| id.strip_prefix("cmpl-")).expect("a task id").to_string();
        let (_, t) = http(node0.api, "GET", &format!("/v1/chain/tasks/{task}"), "sk-local-0", "");
        let tv: serde_json::Value = serde_json::from_str(&t).expect("task JSON");
        let (executor, intermediary) = (tv["executor"].as_u64(), tv["intermediary"].as_u64());
        println!("request {attempt}: task {task}, intermediary {intermediary:?}, executor {executor:?}");
        if matches!(executor, Some(2 | 3)) {
            far = Some((task, executor, intermediary));
            break;
        }
    }
    let (task, executor, intermediary) = far.expect("twenty requests in a row ran next to host 0");
    let log = |i: usize| std::fs::read_to_string(configs[i].with_file_name("node.log")).unwrap_or_default();
    if let Some(m) = intermediary.filter(|&m| m != 0) {
        assert!(
            log(m as usize).contains("prompt passed on as the task's intermediary"),
            "host {m}, the intermediary, did not pass the prompt on"
        );
    }
    // Streamed: the executor's tokens came back through the intermediary
    // while it ran (host 0 says so when the first ones arrive).
    let stream = body.replace(r#""temperature":0}"#, r#""temperature":0,"stream":true}"#);
    let (status, events) = http(node0.api, "POST", "/v1/chat/completions", "sk-local-0", &stream);
    assert_eq!(status, 200, "streamed completion: {events}");
    assert!(events.contains("data: [DONE]"), "no end of stream: {events}");
    assert!(log(0).contains("streaming the output as it is made"), "no partial output reached host 0");
    let dialed: Vec<usize> = (0..RING).filter(|&i| log(i).contains("dialing a host to reach it")).collect();
    assert!(!dialed.is_empty(), "nobody dialed an announced address (executor {executor:?})");
    println!("hosts that dialed an announced address: {dialed:?}");

    // Past two epochs, every host at the same root; the Sprints' proof
    // batches crossed the ring (weights changed); the far task settled.
    let epoch = two_epochs(&lines, &mut seen, RING);
    for h in 0..=2 * epoch {
        let roots: Vec<&String> = (0..RING).filter_map(|i| seen.get(&(i, h))).collect();
        assert_eq!(roots.len(), RING, "height {h}: not every host reported it");
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "height {h}: roots differ {roots:?}");
    }
    let (_, host_list) = http(node0.api, "GET", "/v1/chain/hosts", "sk-local-0", "");
    let hv: serde_json::Value = serde_json::from_str(&host_list).expect("hosts JSON");
    let weights: Vec<u64> =
        hv["hosts"].as_array().expect("hosts").iter().filter_map(|h| h["weight"].as_u64()).collect();
    println!("weights after two epochs: {weights:?}");
    // The Sprint is bound by time: a host that lags a few blocks behind (two
    // cores shared by five hosts and the tests) may miss its window, but most
    // batches cross the ring.
    assert!(weights.len() >= 3, "few hosts' proof batches crossed the ring: {host_list}");
    assert!(weights.iter().any(|&w| w != 10), "weights never changed: {host_list}");
    let settle_by = Instant::now() + Duration::from_secs(120);
    let t = loop {
        let (_, t) = http(node0.api, "GET", &format!("/v1/chain/tasks/{task}"), "sk-local-0", "");
        if t.contains("\"settled\"") || Instant::now() > settle_by {
            break t;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(t.contains("\"settled\""), "the far task did not settle: {t}");
    for mut c in hosts.drain(..) {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}
