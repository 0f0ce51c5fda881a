//! Real client libraries, run by `tests/clients/run.sh` (which installs them under a lock).
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Room for a first install on a fresh machine (pip, npm) plus the checks (a few seconds each).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs `bash tests/clients/run.sh <lib>` with exactly the given check variables; panics with
/// everything it printed unless it exits 0 (the harness adds the proxy's log).
pub fn run_checks(lib: &str, env: &[(&str, String)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("tests/clients/run.sh"))
        .arg(lib)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a run that overstays can be stopped whole.
        .process_group(0);
    for var in ["PROXY_PORT", "REDIS_PORT", "DIRECT", "SKIP_PENDING"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = cmd.spawn().expect("spawn bash tests/clients/run.sh");
    let pgid = child.id();

    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait run.sh") {
            break Some(status);
        }
        if start.elapsed() >= RUN_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let elapsed = start.elapsed();
    let report = format!(
        "--- run.sh {lib} output ---\n{out}--- stderr ---\n{err}--- ({:.1} s, env {env:?})",
        elapsed.as_secs_f64()
    );
    match status {
        None => panic!("{lib}: run.sh still running after {RUN_TIMEOUT:?}: stopped\n{report}"),
        Some(s) if !s.success() => panic!("{lib}: client checks failed ({s})\n{report}"),
        Some(_) => println!("{report}"), // shown with --nocapture
    }
}
