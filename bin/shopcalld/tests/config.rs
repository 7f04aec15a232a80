//! Configuration of the real binary: precedence flag > environment > file > default, the
//! effective configuration in the start-up log, and precise refusals of bad values.

mod common;

use std::process::Stdio;

use common::{Daemon, LOOPBACK_ARGS, daemon_command};

/// The `fields` of the "effective configuration" log line.
fn effective(daemon: &Daemon) -> serde_json::Value {
    daemon
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "effective configuration")
        .map(|v| v["fields"].clone())
        .expect("the effective configuration is logged at start")
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("shopcalld-it-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("temp dir is writable");
    path
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let file = temp_file(
        "precedence.toml",
        "max_calls = 5\nconnect_timeout_secs = 7\nvideo_codecs = [\"vp8\", \"h264\"]\n\
         shutdown_timeout_secs = 9\nring_timeout_secs = 30\n",
    );
    let file_arg = file.to_str().unwrap();
    let daemon = Daemon::start_with(
        &["--config", file_arg, "--connect-timeout-secs", "8"],
        &[
            ("SHOPCALL_MAX_CALLS", "3"),
            ("SHOPCALL_CONNECT_TIMEOUT_SECS", "6"),
        ],
    );
    let f = effective(&daemon);
    assert_eq!(f["max_calls"], "3 (env)", "{f}");
    assert_eq!(f["connect_timeout_secs"], "8 (flag)", "{f}");
    assert_eq!(f["video_codecs"], "VP8,H264 (file)", "{f}");
    assert_eq!(f["shutdown_timeout_secs"], "9 (file)", "{f}");
    assert_eq!(f["log_level"], "info,rtc=warn,webrtc=warn (default)", "{f}");
    assert_eq!(f["announce_ips"], "127.0.0.1 (flag)", "{f}");
    assert_eq!(f["ring_timeout_secs"], "30 (file)", "{f}");
    assert_eq!(f["default_profile"], "rear-camera-off (default)", "{f}");
    assert_eq!(f["profiles"], "none (default)", "{f}");
    drop(daemon);
    std::fs::remove_file(file).ok();
}

/// Runs the binary to completion with `extra` arguments and `env`; returns (code, stderr).
fn run_to_exit(extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = daemon_command(&LOOPBACK_ARGS, extra, env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("shopcalld runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_exit_before_binding_with_a_precise_message() {
    let (code, err) = run_to_exit(&["--max-calls", "0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("max_calls is 0 (from --max-calls)"), "{err}");

    let (code, err) = run_to_exit(&[], &[("SHOPCALL_VIDEO_CODECS", "h264")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("SHOPCALL_VIDEO_CODECS"), "{err}");
    assert!(err.contains("must contain vp8"), "{err}");

    let (code, err) = run_to_exit(&["--announce-ip", "0.0.0.0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unspecified"), "{err}");

    let file = temp_file("typo.toml", "max_cals = 5\n");
    let (code, err) = run_to_exit(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("max_cals"), "{err}");
    std::fs::remove_file(file).ok();

    // A profile that breaks a rule: the message names the profile and the key.
    let file = temp_file(
        "peek.toml",
        "[profiles.peek]\nbase = \"merchant-video\"\ncustomer.camera_at_join = \"on\"\n",
    );
    let (code, err) = run_to_exit(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(
            "profile \"peek\": customer.camera_at_join is on, but only the customer can turn on \
             the customer's camera: it must be off"
        ),
        "{err}"
    );
    std::fs::remove_file(file).ok();

    let file = temp_file("eligibility.toml", "[eligibility]\nmin_reply_rate = 1.5\n");
    let (code, err) = run_to_exit(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("eligibility.min_reply_rate must be a number from 0 to 1, got 1.5"),
        "{err}"
    );
    std::fs::remove_file(file).ok();

    let (code, err) = run_to_exit(&["--default-profile", "nope"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("(from --default-profile): default profile \"nope\" is not defined"),
        "{err}"
    );

    let (code, err) = run_to_exit(&[], &[("SHOPCALL_RING_TIMEOUT_SECS", "0")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ring_timeout_secs is 0 (from SHOPCALL_RING_TIMEOUT_SECS)"),
        "{err}"
    );

    // clap's own refusal of a malformed address.
    let (code, err) = run_to_exit(&["--udp-bind", "nowhere"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--udp-bind"), "{err}");
}

#[test]
fn a_busy_port_is_reported_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let out = daemon_command(
        &[
            "--grpc-listen",
            &addr,
            "--metrics-listen",
            "127.0.0.1:0",
            "--udp-bind",
            "127.0.0.1:0",
            "--announce-ip",
            "127.0.0.1",
        ],
        &[],
        &[],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .output()
    .expect("shopcalld runs");
    let (code, err) = (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen for gRPC on {addr}")),
        "{err}"
    );
}

#[test]
fn help_lists_every_flag() {
    let out = daemon_command(&["--help"], &[], &[])
        .output()
        .expect("shopcalld runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--grpc-listen",
        "--metrics-listen",
        "--udp-bind",
        "--announce-ip",
        "--max-calls",
        "--video-codecs",
        "--connect-timeout-secs",
        "--shutdown-timeout-secs",
        "--log-format",
        "--log-level",
        "--ring-timeout-secs",
        "--max-duration-secs",
        "--inactivity-timeout-secs",
        "--disconnect-timeout-secs",
        "--reconnect-grace-secs",
        "--default-profile",
        "SHOPCALL_GRPC_LISTEN",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
