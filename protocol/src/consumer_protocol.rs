//! The embedded consumer protocol (protocol type "consumer"): what classic
//! group members put in their JoinGroup metadata and SyncGroup assignments.
//! The broker reads only the subscribed topics, as Kafka's coordinator does,
//! to know which topics a group is actively subscribed to.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The protocol type of Kafka's consumers in JoinGroup.
pub const PROTOCOL_TYPE: &str = "consumer";

/// The topics a `ConsumerProtocolSubscription` (any version) names, or
/// `None` when `metadata` is not one. Every version starts with version 0's
/// fields, so the body is read as version 0 whatever version it declares,
/// as Kafka does; a malformed body is `None`, never a panic or a large
/// allocation.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut body = metadata.clone();
    if body.remaining() < 6 || body.get_i16() < 0 {
        return None;
    }
    // The generated decoder reserves room for the declared topic count
    // before reading them: refuse a count the bytes cannot hold (each topic
    // takes at least its 2-byte length).
    let count = i32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
    if count < -1 || count as i64 * 2 > body.remaining() as i64 - 4 {
        return None;
    }
    let decoded = catch_unwind(AssertUnwindSafe(|| ConsumerProtocolSubscription::decode(&mut body, 0))).ok()?.ok()?;
    Some(decoded.topics.iter().map(|topic| topic.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn subscription(version: i16, topics: &[&str]) -> Bytes {
        let mut body = ConsumerProtocolSubscription::default();
        body.topics = topics.iter().map(|t| StrBytes::from_string(t.to_string())).collect();
        let mut out = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut out, version);
        body.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn topics_come_out_of_every_version() {
        // Proves versions 0 to 3 (librdkafka and the Java client send 1-3)
        // and a future version 9 yield the subscribed topics, and garbage
        // yields None.
        for version in [0, 1, 2, 3] {
            assert_eq!(subscribed_topics(&subscription(version, &["a", "b"])), Some(vec!["a".into(), "b".into()]));
        }
        let mut future = subscription(3, &["c"]).to_vec();
        future[1] = 9;
        assert_eq!(subscribed_topics(&Bytes::from(future)), Some(vec!["c".into()]));
        assert_eq!(subscribed_topics(&Bytes::from_static(b"\x00")), None);
        assert_eq!(subscribed_topics(&Bytes::from_static(b"\x00\x00\x7f\xff\xff\xff")), None);
    }
}
