//! Requests and responses through the codec wrapper: headers per version,
//! the ApiVersions exceptions, clean errors, zero-copy records, and encode →
//! decode round trips for every API at every version the codecs know.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::api::{self, api_versions, ApiKey};
use protocol::compression::Codec;
use protocol::frame::FrameDecoder;
use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use protocol::messages::{ApiVersionsRequest, ProduceRequest, RequestHeader, RequestKind, ResponseKind, TopicName};
use protocol::record_batch::RecordBatchBuilder;
use protocol::{decode_request, decode_response, encode_request, encode_response, DecodeError, StrBytes};

fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("codec-test"));
    header
}

/// Encodes a request and cuts it back out of the wire with the frame decoder.
fn wire_request(header: &RequestHeader, body: &RequestKind) -> Bytes {
    let mut wire = BytesMut::new();
    encode_request(&mut wire, header, body).unwrap();
    FrameDecoder::default().decode(&mut wire).unwrap().expect("one whole frame")
}

#[test]
fn api_versions_v0_to_v4_decode_with_the_right_header() {
    // Proves header v1 below v3 and header v2 (tagged fields) from v3.
    for version in 0..=4 {
        let frame = wire_request(&header(ApiKey::ApiVersions, version, 40 + i32::from(version)), &{
            let mut body = ApiVersionsRequest::default();
            if version >= 3 {
                body.client_software_name = StrBytes::from_static_str("stele-test");
                body.client_software_version = StrBytes::from_static_str("1.0");
            }
            RequestKind::ApiVersions(body)
        });
        let request = decode_request(frame).unwrap();
        assert_eq!(request.correlation_id(), 40 + i32::from(version));
        assert_eq!(request.header.client_id.as_deref(), Some("codec-test"));
        let RequestKind::ApiVersions(body) = request.body else { panic!("wrong body") };
        if version >= 3 {
            assert_eq!(body.client_software_name.as_str(), "stele-test");
        }
    }
}

#[test]
fn api_versions_of_an_unknown_version_is_answered_with_v0_and_error_35() {
    // Proves the Kafka rule end to end: a v9 request (body unknowable) decodes
    // to an empty body; the answer is a v0 body with header v0, error 35 and
    // the supported list, which a v0 client decoder reads back.
    let mut wire = BytesMut::new();
    wire.put_i16(18);
    wire.put_i16(9);
    wire.put_i32(77);
    wire.put_i16(-1); // null client id
    wire.put_u8(0); // no tagged fields
    wire.put_slice(b"whatever a future version carries");
    let request = decode_request(wire.freeze()).unwrap();
    assert_eq!((request.api_key, request.api_version()), (ApiKey::ApiVersions, 9));
    let RequestKind::ApiVersions(body) = &request.body else { panic!("wrong body") };
    let (version, response) = api_versions::respond(9, body, api::SUPPORTED_APIS);
    assert_eq!((version, response.error_code), (0, 35));
    let mut out = BytesMut::new();
    encode_response(&mut out, 77, ApiKey::ApiVersions, version, &ResponseKind::ApiVersions(response)).unwrap();
    let frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
    // Header v0: the correlation id, then straight into the v0 body.
    assert_eq!(&frame[..6], &[0, 0, 0, 77, 0, 35]);
    let (correlation_id, ResponseKind::ApiVersions(back)) = decode_response(frame, ApiKey::ApiVersions, 0).unwrap()
    else {
        panic!("wrong body")
    };
    assert_eq!(correlation_id, 77);
    assert!(back.api_keys.iter().any(|entry| entry.api_key == 18));

    // Below the minimum (a negative version) gets the same answer, as in Kafka.
    let mut wire = BytesMut::new();
    wire.put_i16(18);
    wire.put_i16(-1);
    wire.put_i32(78);
    wire.put_i16(-1);
    let request = decode_request(wire.freeze()).unwrap();
    let RequestKind::ApiVersions(body) = &request.body else { panic!("wrong body") };
    assert_eq!(api_versions::respond(-1, body, api::SUPPORTED_APIS).1.error_code, 35);
}

#[test]
fn flexible_api_versions_responses_still_use_header_v0() {
    // Proves there is no tagged-fields byte after the correlation id in a v3
    // response (clients parse it before they know we speak flexible).
    let (version, response) = api_versions::respond(3, &ApiVersionsRequest::default(), api::SUPPORTED_APIS);
    let mut out = BytesMut::new();
    encode_response(&mut out, 5, ApiKey::ApiVersions, version, &ResponseKind::ApiVersions(response)).unwrap();
    let mut frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
    assert_eq!(frame.get_i32(), 5);
    assert_eq!(frame.get_i16(), 42, "error code: the empty software name is refused, as in Kafka");
}

#[test]
fn short_frames_unknown_keys_and_versions_are_errors() {
    assert!(matches!(decode_request(Bytes::from_static(&[0, 18, 0])), Err(DecodeError::ShortHeader { len: 3 })));
    assert!(matches!(
        decode_request(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff])),
        Err(DecodeError::UnknownApiKey { api_key: 0x7f00 })
    ));
    // Produce v2 (message format v1) is gone from Kafka 4 and from us.
    let err = decode_request(Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff])).unwrap_err();
    assert!(matches!(err, DecodeError::UnsupportedVersion { api_key: ApiKey::Produce, version: 2, min: 3, .. }));
    assert!(err.to_string().contains("Produce version 2"), "{err}");
    // A body cut short is Malformed, naming the API and part.
    let frame = wire_request(&header(ApiKey::Metadata, 12, 1), &RequestKind::Metadata(Default::default()));
    let err = decode_request(frame.slice(..frame.len() - 1)).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { api_key: ApiKey::Metadata, version: 12, .. }), "{err}");
}

#[test]
fn produce_records_are_not_copied_out_of_the_frame() {
    // Proves decoding a Produce request leaves the records as a slice of the
    // request frame, for non-flexible (v8) and flexible (v9+) versions.
    let mut builder = RecordBatchBuilder::new(Codec::None);
    builder.push(1, Some(b"key"), Some(&[7u8; 4096]), &[]);
    let batch = builder.build().unwrap();
    for version in [3i16, 8, 9, 11] {
        let mut partition = PartitionProduceData::default();
        partition.records = Some(batch.clone());
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("zero-copy"));
        topic.partition_data = vec![partition];
        let mut body = ProduceRequest::default();
        body.acks = -1;
        body.topic_data = vec![topic];
        let frame = wire_request(&header(ApiKey::Produce, version, 9), &RequestKind::Produce(body));
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let RequestKind::Produce(decoded) = decode_request(frame.clone()).unwrap().body else { panic!("wrong body") };
        let records = decoded.topic_data[0].partition_data[0].records.clone().unwrap();
        assert_eq!(records, batch);
        assert!(frame_range.contains(&(records.as_ptr() as usize)), "v{version} copied the records");
    }
}

#[test]
fn every_request_and_response_round_trips_at_every_version() {
    // Proves the wrapper's headers and the codecs agree for all API keys and
    // versions: filler bodies encode, decode, and come back equal.
    let (mut pairs, mut requests, mut responses) = (0, 0, 0);
    for api_key in ApiKey::iter() {
        let range = api_key.valid_versions();
        for version in range.min..=range.max {
            pairs += 1;
            requests += usize::from(request_round_trips(api_key, version));
            responses += usize::from(response_round_trips(api_key, version));
        }
    }
    // The filler cannot build every body (some fields reject zeros and ones);
    // the count guards against the test silently checking nothing.
    assert!(requests * 10 >= pairs * 9, "only {requests} of {pairs} requests round-tripped");
    assert!(responses * 10 >= pairs * 9, "only {responses} of {pairs} responses round-tripped");
}

fn request_round_trips(api_key: ApiKey, version: i16) -> bool {
    // Decoding filler bytes at this version gives a body of the right type in
    // which every field the version carries is set, without naming all ~90
    // message types here.
    let Some(body) = filler_bodies().find_map(|mut b| RequestKind::decode(api_key, &mut b, version).ok()) else {
        return false;
    };
    let frame = wire_request(&header(api_key, version, 3), &body);
    let decoded = decode_request(frame).unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    assert_eq!(decoded.body, body, "{api_key:?} v{version} request");
    true
}

fn response_round_trips(api_key: ApiKey, version: i16) -> bool {
    let Some(body) = filler_bodies().find_map(|mut b| ResponseKind::decode(api_key, &mut b, version).ok()) else {
        return false;
    };
    let mut out = BytesMut::new();
    encode_response(&mut out, 11, api_key, version, &body).unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    let frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
    let (correlation_id, decoded) =
        decode_response(frame, api_key, version).unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    assert_eq!((correlation_id, &decoded), (11, &body), "{api_key:?} v{version} response");
    true
}

/// Bodies that decode at most versions: all zeros gives empty arrays and
/// strings in non-flexible versions; all ones gives empty compact arrays and
/// strings (length + 1 = 1) in flexible versions, where zero means null.
fn filler_bodies() -> impl Iterator<Item = Bytes> {
    [0u8, 1].into_iter().map(|byte| Bytes::from(vec![byte; 4096]))
}
