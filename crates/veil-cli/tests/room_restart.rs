//! Issue 12, item 19: a data room served by `veil room serve --state DIR` is killed with
//! SIGKILL between uploads and between the run and the fetch; every restart resumes it from
//! DIR and nothing a party was told is lost. Issue 16: the same, with the room mounted in
//! `veil serve` (`[[rooms]]`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::Path;
use std::process::Command;

fn veil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = veil(args);
    assert!(
        out.status.success(),
        "veil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `veil room serve` process. Dropping it sends SIGKILL (`Child::kill`): no shutdown code
/// runs, as in a crash.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which process serves the room.
#[derive(Clone, Copy, Debug)]
enum Host {
    /// `veil room serve --state state`.
    RoomServe,
    /// `veil serve` with the room mounted at `/rooms/study` (state in `state`).
    VeilServe,
}

/// Starts a server on `dir`'s files and state directory; returns it and the room's URL, or
/// what the server said when it exits without serving.
fn start_room(dir: &Path, host: Host) -> Result<(Server, String), String> {
    use std::io::BufRead;
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veil"));
    match host {
        Host::RoomServe => cmd.args([
            "room",
            "serve",
            "--manifest",
            &p("room.toml"),
            "--platform-seed-file",
            &p("platform.seed"),
            "--listen",
            "127.0.0.1:0",
            "--state",
            &p("state"),
        ]),
        Host::VeilServe => {
            std::fs::write(
                dir.join("serve.toml"),
                "listen = \"127.0.0.1:0\"\n[tls]\nmode = \"off\"\n[[rooms]]\nname = \"study\"\n\
                 manifest = \"room.toml\"\nplatform_seed_file = \"platform.seed\"\nstate = \"state\"\n",
            )
            .unwrap();
            cmd.args(["serve", "--config", &p("serve.toml")])
        }
    };
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both streams are read to their end, so the server never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let server = Server(child);
    let mut said = String::new();
    while let Ok(line) = rx.recv() {
        if let Some(rest) = line.find(" on http://").map(|i| &line[i + 4..]) {
            let url = rest.split_whitespace().next().unwrap().to_string();
            return Ok(match host {
                Host::RoomServe => (server, url),
                Host::VeilServe => (server, format!("{url}/rooms/study")),
            });
        }
        said.push_str(&line);
        said.push('\n');
    }
    Err(said)
}

fn kill9(server: Server) {
    drop(server);
}

#[test]
fn a_room_killed_between_uploads_and_before_the_fetch_loses_nothing() {
    killed_between_uploads_and_before_the_fetch(Host::RoomServe);
}

#[test]
fn a_room_in_veil_serve_killed_between_uploads_and_before_the_fetch_loses_nothing() {
    killed_between_uploads_and_before_the_fetch(Host::VeilServe);
}

fn killed_between_uploads_and_before_the_fetch(host: Host) {
    let dir =
        std::env::temp_dir().join(format!("veil-cli-restart-{host:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let parties = ["hospital-a", "hospital-b", "hospital-c"];
    for name in parties {
        ok(&["room", "keygen", "--party", name, "--dir", &p("")]);
    }
    let text = ok(&["room", "platform", "--out", &p("platform.seed")]);
    let platform_key = text
        .lines()
        .find_map(|l| l.strip_prefix("platform key"))
        .unwrap()
        .trim()
        .to_string();
    ok(&[
        "room",
        "create",
        "--code",
        "builtin:stats",
        "--party",
        "hospital-a",
        "--party",
        "hospital-b",
        "--party",
        "hospital-c",
        "--keys-dir",
        &p(""),
        "--output-to",
        "hospital-a,hospital-b",
        "--sim-platform-key",
        &platform_key,
        "--out",
        &p("room.toml"),
    ]);
    let data: [Vec<f64>; 3] = [
        (0..50).map(|i| 4.0 + f64::from(i) * 0.1).collect(),
        (0..30).map(|i| 6.0 + f64::from(i) * 0.2).collect(),
        (0..20).map(|i| 9.0 - f64::from(i) * 0.3).collect(),
    ];
    for (name, values) in parties.iter().zip(&data) {
        let mut csv = "glucose\n".to_string();
        for v in values {
            csv.push_str(&format!("{v}\n"));
        }
        std::fs::write(p(&format!("{name}.csv")), csv).unwrap();
    }
    let manifest = p("room.toml");
    let party = |url: &str, cmd: &str, name: &str, extra: &[&str]| {
        let key = p(&format!("{name}.key"));
        let mut args = vec![
            "room",
            cmd,
            "--url",
            url,
            "--manifest",
            &manifest,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let upload = |url: &str, name: &str| {
        let csv = p(&format!("{name}.csv"));
        party(url, "upload", name, &["--data", &csv])
    };

    // a uploads; the room is killed; b uploads after the restart; killed again.
    let (room, url) = start_room(&dir, host).unwrap();
    let receipt_a = upload(&url, "hospital-a");
    kill9(room);
    let (room, url) = start_room(&dir, host).unwrap();
    upload(&url, "hospital-b");
    // a's upload survived: a second one is refused as a repeat, c is the one missing.
    let key_a = p("hospital-a.key");
    let csv_a = p("hospital-a.csv");
    let again = veil(&[
        "room",
        "upload",
        "--url",
        &url,
        "--manifest",
        &manifest,
        "--key",
        &key_a,
        "--data",
        &csv_a,
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already uploaded"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    kill9(room);

    // c uploads after the second restart, c asks for the run; killed before anyone fetched.
    let (room, url) = start_room(&dir, host).unwrap();
    let key_c = p("hospital-c.key");
    let early = veil(&[
        "room",
        "run",
        "--url",
        &url,
        "--manifest",
        &manifest,
        "--key",
        &key_c,
    ]);
    let early = String::from_utf8_lossy(&early.stderr).into_owned();
    assert!(
        early.contains("waiting for uploads from hospital-c") && !early.contains("hospital-a,"),
        "a's and b's uploads must survive the restarts: {early}"
    );
    upload(&url, "hospital-c");
    let run: serde_json::Value =
        serde_json::from_str(&party(&url, "run", "hospital-c", &["--format", "json"])).unwrap();
    kill9(room);

    // After the restart the recipients fetch the output computed before the crash.
    let (room, url) = start_room(&dir, host).unwrap();
    let again = veil(&[
        "room",
        "run",
        "--url",
        &url,
        "--manifest",
        &manifest,
        "--key",
        &key_c,
    ]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already ran"),
        "the run is not redone: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let out_a = p("out-a.bin");
    let values: serde_json::Value = serde_json::from_str(&party(
        &url,
        "fetch-output",
        "hospital-a",
        &["--format", "json", "--out", &out_a],
    ))
    .unwrap();
    let bytes = std::fs::read(&out_a).unwrap();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
        run["output_sha256"].as_str().unwrap(),
        "the fetched output is the one the run announced"
    );
    let all: Vec<f64> = data.concat();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    assert_eq!(values["count"], serde_json::json!(n));
    assert!((values["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    kill9(room);
    let (_room, url) = start_room(&dir, host).unwrap();
    let values_b: serde_json::Value = serde_json::from_str(&party(
        &url,
        "fetch-output",
        "hospital-b",
        &["--format", "json"],
    ))
    .unwrap();
    assert_eq!(values_b, values);

    // The audit log verifies end to end (one chain, one key, across four restarts) and tells
    // the story: three uploads, one run, four resumptions, a's receipt hash in the log.
    let log: serde_json::Value = serde_json::from_str(&ok(&[
        "room",
        "audit",
        "--url",
        &url,
        "--manifest",
        &manifest,
        "--format",
        "json",
    ]))
    .unwrap();
    let events: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let count = |ev: &str| events.iter().filter(|e| **e == ev).count();
    assert_eq!(events[0], "room_created");
    assert_eq!(count("room_created"), 1);
    assert_eq!(count("upload"), 3);
    assert_eq!(count("run"), 1);
    assert_eq!(count("resumed"), 4);
    assert_eq!(count("output_released"), 2);
    let receipt_hash = receipt_a
        .lines()
        .find_map(|l| l.trim().strip_prefix("data sha256"))
        .unwrap()
        .trim()
        .to_string();
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "upload"
            && e["details"]["party"] == "hospital-a"
            && e["details"]["data_sha256"] == receipt_hash.as_str()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tampered_state_directory_stops_the_room_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("veil-cli-tamper-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    ok(&["room", "keygen", "--party", "alice", "--dir", &p("")]);
    let text = ok(&["room", "platform", "--out", &p("platform.seed")]);
    let platform_key = text
        .lines()
        .find_map(|l| l.strip_prefix("platform key"))
        .unwrap()
        .trim()
        .to_string();
    ok(&[
        "room",
        "create",
        "--code",
        "builtin:stats",
        "--party",
        "alice",
        "--keys-dir",
        &p(""),
        "--output-to",
        "alice",
        "--sim-platform-key",
        &platform_key,
        "--out",
        &p("room.toml"),
    ]);
    std::fs::write(p("a.csv"), "glucose\n1\n2\n3\n").unwrap();
    let (room, url) = start_room(&dir, Host::RoomServe).unwrap();
    let key = p("alice.key");
    let manifest = p("room.toml");
    let csv = p("a.csv");
    ok(&[
        "room",
        "upload",
        "--url",
        &url,
        "--manifest",
        &manifest,
        "--key",
        &key,
        "--data",
        &csv,
    ]);
    kill9(room);
    let sealed = dir.join("state/uploads/alice.sealed");
    let mut bytes = std::fs::read(&sealed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    let e = start_room(&dir, Host::RoomServe).map(|_| ()).unwrap_err();
    assert!(e.contains("alice.sealed"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
