//! Startup checks of the real `stele` binary: one broker per data directory
//! and per port, clear errors for bad configuration, and a clean exit.

mod common;

use std::process::Command;

use common::*;

fn run_stele(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stele")).args(args).output().expect("stele runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_second_broker_on_the_same_data_dir_fails_naming_the_holder() {
    // Proves the data directory lock: a second process fails at once with a
    // message naming the directory and the pid holding it.
    let broker = Broker::start();
    let other_port = free_port().to_string();
    let dir = broker.data_dir.to_str().unwrap().to_owned();
    let (code, stderr) =
        run_stele(&["--data-dir", &dir, "--listen", &format!("127.0.0.1:{other_port}"), "--shards", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is in use by another stele process"), "{stderr}");
    assert!(stderr.contains(&dir), "names the directory: {stderr}");
}

#[test]
fn a_second_broker_on_the_same_port_fails_naming_the_port() {
    // Proves the port check before the SO_REUSEPORT bind: without it the
    // second broker would silently take half the connections.
    let broker = Broker::start();
    let temp = tempfile::tempdir_in(test_tmp_dir()).unwrap();
    let dir = temp.path().join("data");
    let (code, stderr) =
        run_stele(&["--data-dir", dir.to_str().unwrap(), "--listen", &broker.bootstrap(), "--shards", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {}", broker.bootstrap())), "{stderr}");
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    // Proves an unknown key and a bad value in the config file stop the
    // broker before it starts, with the file and key named.
    let temp = tempfile::tempdir_in(test_tmp_dir()).unwrap();
    let file = temp.path().join("stele.toml");
    std::fs::write(&file, "[shard]\nio_depth = -3\n").unwrap();
    let (code, stderr) = run_stele(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("io_depth") && stderr.contains("stele.toml"), "{stderr}");
    std::fs::write(&file, "listen_adress = \"127.0.0.1:1\"\n").unwrap();
    let (code, stderr) = run_stele(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

#[test]
fn sigterm_stops_cleanly_and_marks_logs_clean() {
    // Proves SIGTERM exits 0 and leaves every partition with its
    // clean-shutdown marker, so the next start skips the recovery scan.
    let mut broker = Broker::start();
    create_topic(&broker, "marked", 2, &[]);
    let producer = producer(&broker, &[]);
    produce_all(&producer, "marked", Some(1), &[(None, b"x".to_vec())]);
    drop(producer);
    assert!(broker.stop());
    for partition in 0..2 {
        let marker = broker.data_dir.join(format!("marked-{partition}")).join("clean_shutdown");
        assert!(marker.exists(), "{} missing", marker.display());
    }
    assert!(broker.log().contains("stopped cleanly"), "{}", broker.log());
}

#[test]
fn prefault_memory_makes_the_budgets_resident_before_clients_come() {
    // Proves `prefault_memory`: with it the shard's tail-cache and
    // write-buffer budgets (80 MiB here) are resident once the broker is
    // ready and still resident after it idled a while; without it the idle
    // broker holds far less.
    const BUDGETS: u64 = (64 + 16) << 20;
    let (_dir, config) = config_file("[shard]\ntail_cache_bytes = \"64MiB\"\nwrite_buffer_bytes = \"16MiB\"\n");
    let prefaulted = Broker::start_with(1, &["--config", &config, "--prefault-memory", "true"]);
    assert!(prefaulted.log().contains("prefaulted the shard's memory budgets"), "{}", prefaulted.log());
    assert!(prefaulted.rss_bytes() >= BUDGETS, "resident {} bytes after prefaulting", prefaulted.rss_bytes());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(prefaulted.rss_bytes() >= BUDGETS, "resident {} bytes after idling", prefaulted.rss_bytes());
    let plain = Broker::start_with(1, &["--config", &config, "--prefault-memory", "false"]);
    assert!(!plain.log().contains("prefaulted"), "{}", plain.log());
    assert!(plain.rss_bytes() < BUDGETS / 2, "resident {} bytes without prefaulting", plain.rss_bytes());
}
