//! Bad input over raw sockets against the real `stele` binary: each kind of
//! garbage closes only its own connection, memory does not grow with lies,
//! and real clients on other connections keep working throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use rdkafka::Offset;

/// Sends `bytes` and returns true when the broker closes the connection
/// (read returns 0 or a reset) within a few seconds.
fn closes_connection(broker: &Broker, bytes: &[u8]) -> bool {
    let mut socket = TcpStream::connect(broker.bootstrap()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.write_all(bytes).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A request frame: size, api key, version, correlation id, client id "t", body.
fn frame(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&7i32.to_be_bytes());
    payload.extend_from_slice(&1i16.to_be_bytes());
    payload.push(b't');
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

/// 4 KiB of pseudo-random bytes behind a truthful size prefix (a prefix
/// promising more bytes than sent is a slow client, which Kafka waits for).
fn random_frame() -> Vec<u8> {
    let body: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn still_serves(broker: &Broker, topic: &str, round: usize) {
    let producer = producer(broker, &[]);
    produce_all(&producer, topic, Some(0), &[(None, format!("after-{round}").into_bytes())]);
    let consumer = consumer(broker, &[]);
    let got = consume(&consumer, topic, &[0], Offset::Offset(round as i64), 1, Duration::from_secs(20));
    assert_eq!(got[0].value, format!("after-{round}").into_bytes());
}

#[test]
fn garbage_closes_only_its_connection() {
    // Proves each kind of bad frame closes that connection and the broker
    // goes on serving a real client afterwards.
    let broker = Broker::start();
    create_topic(&broker, "survivor", 1, &[]);
    let mut garbage: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes in a whole frame", random_frame()),
        ("lying size 2^31-1", i32::MAX.to_be_bytes().to_vec()),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("zero size", 0i32.to_be_bytes().to_vec()),
        ("unknown API key", frame(999, 0, &[])),
        ("unsupported Produce version", frame(0, 99, &[0; 16])),
        ("API not implemented (ConsumerGroupHeartbeat)", frame(68, 0, &[0; 32])),
        ("truncated Metadata body", frame(3, 12, &[0xff])),
    ];
    // A Metadata v1 request claiming 2^31-1 topics in 14 bytes: the codec
    // pre-sizes from the count; under mimalloc that is address space only.
    garbage.push(("lying array count", frame(3, 1, &i32::MAX.to_be_bytes())));
    for (round, (what, bytes)) in garbage.iter().enumerate() {
        assert!(closes_connection(&broker, bytes), "{what}: connection left open");
        still_serves(&broker, "survivor", round);
    }
}

#[test]
fn api_versions_v0_over_a_raw_socket_lists_itself() {
    // Proves the simplest client handshake: ApiVersions v0 gets a v0 answer
    // with error 0 and a list including key 18.
    let broker = Broker::start();
    let mut socket = TcpStream::connect(broker.bootstrap()).unwrap();
    socket.write_all(&frame(18, 0, &[])).unwrap();
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut body).unwrap();
    assert_eq!(&body[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&body[4..6], &0i16.to_be_bytes(), "error code");
    let count = i32::from_be_bytes(body[6..10].try_into().unwrap()) as usize;
    let keys: Vec<i16> =
        (0..count).map(|i| i16::from_be_bytes(body[10 + i * 6..12 + i * 6].try_into().unwrap())).collect();
    assert!(keys.contains(&18) && keys.contains(&0) && keys.contains(&1), "{keys:?}");
}

#[test]
fn thousands_of_idle_connections_are_cheap() {
    // Proves 2000 idle connections are accepted, cost little memory each,
    // and do not stop a real client from producing and consuming.
    let broker = Broker::start();
    create_topic(&broker, "crowded", 1, &[]);
    let before = broker.rss_bytes();
    let idle: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(broker.bootstrap()).unwrap()).collect();
    still_serves(&broker, "crowded", 0);
    let grown = broker.rss_bytes().saturating_sub(before);
    assert!(grown < 2000 * 40 * 1024, "2000 idle connections grew RSS by {} KiB", grown / 1024);
    drop(idle);
}
