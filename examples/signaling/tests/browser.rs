//! A real browser call, end to end: `tests/browser/call.test.mjs` in headless Chromium,
//! run as part of `cargo test --workspace`.
//!
//! The script starts the real `shopcalld` and this example's service on loopback, opens the
//! merchant console and the customer chat in two Chromium profiles with fake camera and
//! microphone, makes a call, and checks it with the pages' own `getStats()`: audio both ways,
//! no customer video before "Show the product" (not even from a misbehaving page), customer
//! video after it, none after "Stop showing", the record after hang-up, declined and missed
//! invitations. Screenshots and the numbers (`summary.json`) go to
//! `target/tmp/browser-call/`.
//!
//! It needs Chromium (`/usr/bin/chromium`, or `CHROMIUM`), Node.js and `playwright-core` in
//! `tests/browser/node_modules`: `examples/signaling/tests/browser/setup.sh` installs them
//! (CI runs it). Without them the test is **skipped** with a message, unless `CI=true`: then
//! it **fails**. It uses the `shopcalld` binary next to this test's (`cargo test --workspace`
//! builds it; with `-p shopcall-signaling-example` alone, `cargo build -p shopcalld` first), or
//! `SHOPCALLD`. As root, with `unshare` available, it runs inside a new network namespace
//! with only loopback up, so nothing can leave the machine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script stops itself after 110 s; this is the last resort.
const TIMEOUT: Duration = Duration::from_secs(150);

#[test]
fn a_real_browser_call_through_shopcalld() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let shopcalld = shopcalld_binary();

    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("Chromium at {}", chromium.display()));
    }
    if !runs(Command::new("node").arg("--version")) {
        missing.push("Node.js (`node` on the PATH)".to_owned());
    }
    if !dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "playwright-core in {}",
            dir.join("node_modules").display()
        ));
    }
    if !shopcalld.is_file() {
        missing.push(format!(
            "the shopcalld binary at {} (`cargo build -p shopcalld`, or set SHOPCALLD)",
            shopcalld.display()
        ));
    }
    if !missing.is_empty() {
        let message = format!(
            "the browser test needs {}; install them with examples/signaling/tests/browser/setup.sh",
            missing.join(", ")
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message} (CI=true, so this is a failure, not a skip)");
        }
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_real_browser_call_through_shopcalld: {message}"
        );
        return;
    }

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-call");
    let _ = std::fs::remove_dir_all(&artifacts);
    let mut cmd = if loopback_only_namespace_works() {
        let mut c = Command::new("unshare");
        c.args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && exec node call.test.mjs",
        ]);
        c
    } else {
        println!("(not root or no unshare: running on the host's loopback)");
        let mut c = Command::new("node");
        c.arg("call.test.mjs");
        c
    };
    cmd.current_dir(&dir)
        .env("SHOPCALLD", &shopcalld)
        .env("SIGNALING", env!("CARGO_BIN_EXE_shopcall-signaling"))
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout kills the browsers and daemons with it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    println!("shopcalld: {}", shopcalld.display());
    let mut child = cmd.spawn().expect("the browser test starts");
    let output = [
        collect(child.stdout.take().expect("piped")),
        collect(child.stderr.take().expect("piped")),
    ];

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Anything of the test's left behind (it normally stops everything itself).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    for out in output {
        print!("{}", out.join().expect("output reader"));
    }
    println!("artifacts: {}", artifacts.display());
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the browser test failed ({s}); see its output above"),
        None => panic!("the browser test did not finish within {TIMEOUT:?}"),
    }
}

/// `shopcalld` in the same target directory as this test (`target/<profile>/`), or
/// `SHOPCALLD`.
fn shopcalld_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOPCALLD") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/browser-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir.join(format!("shopcalld{}", std::env::consts::EXE_SUFFIX))
}

fn runs(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `unshare -n` (root only) gives us a network namespace with loopback up.
fn loopback_only_namespace_works() -> bool {
    runs(Command::new("unshare").args(["-n", "sh", "-c", "ip link set lo up"]))
}

fn collect(mut stream: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}
