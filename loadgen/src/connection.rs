//! One TCP connection to a broker: ApiVersions negotiation, framing, and
//! requests pipelined on it.
//!
//! A connection starts as a [`Connection`] that makes one call at a time
//! (setup: ApiVersions, Metadata, CreateTopics, InitProducerId,
//! ListOffsets, FindCoordinator). A producer or committer then
//! [`Connection::split`]s it into a
//! [`RequestWriter`] and a [`ResponseReader`] that share the socket, so
//! several requests are in flight while their answers are read by another
//! task; Kafka answers a connection's requests in order, so each answer is
//! matched with the oldest request still waiting, and its correlation id
//! is checked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use protocol::frame::FrameDecoder;
use protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, RequestKind, ResponseKind};
use protocol::StrBytes;

/// The highest version of each API this client speaks; the codecs know
/// more, but each version must also be handled by our code (Produce v13
/// names topics by id only, which loadgen does not send yet; OffsetCommit
/// v9 is KIP-848's, whose simple commits are the same as v8's, and v10
/// names topics by id).
const OUR_MAX_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 16),
    (ApiKey::ListOffsets, 10),
    (ApiKey::Metadata, 13),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::FindCoordinator, 4),
    (ApiKey::ApiVersions, 4),
    (ApiKey::CreateTopics, 7),
    (ApiKey::InitProducerId, 5),
    (ApiKey::AddPartitionsToTxn, 3),
    (ApiKey::EndTxn, 3),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::ShareGroupHeartbeat, 1),
    (ApiKey::ShareFetch, 1),
    (ApiKey::ShareAcknowledge, 1),
];

/// The ApiVersions version asked first; an older broker answers
/// UNSUPPORTED_VERSION and we retry at v0, which every broker knows.
const API_VERSIONS_FIRST: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// The version chosen for each API: min(ours, the broker's max), when the
/// ranges overlap.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    chosen: HashMap<i16, i16>,
}

impl Versions {
    /// Negotiates from the broker's advertised `(key, min, max)` rows.
    pub fn negotiate(broker: impl IntoIterator<Item = (i16, i16, i16)>) -> Versions {
        let mut chosen = HashMap::new();
        let broker: HashMap<i16, (i16, i16)> = broker.into_iter().map(|(k, lo, hi)| (k, (lo, hi))).collect();
        for &(api_key, our_max) in OUR_MAX_VERSIONS {
            let our_min = api_key.valid_versions().min;
            if let Some(&(broker_min, broker_max)) = broker.get(&(api_key as i16)) {
                let version = our_max.min(broker_max);
                if version >= our_min.max(broker_min) {
                    chosen.insert(api_key as i16, version);
                }
            }
        }
        Versions { chosen }
    }

    pub fn get(&self, api_key: ApiKey) -> anyhow::Result<i16> {
        self.chosen
            .get(&(api_key as i16))
            .copied()
            .ok_or_else(|| anyhow!("the broker supports no version of {api_key:?} that loadgen speaks"))
    }
}

type Socket = Rc<RefCell<TcpStream>>;

/// Encodes requests with increasing correlation ids.
#[derive(Debug)]
struct Encoder {
    client_id: StrBytes,
    next_correlation_id: i32,
}

impl Encoder {
    fn encode(&mut self, out: &mut BytesMut, api_key: ApiKey, version: i16, body: &RequestKind) -> anyhow::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        protocol::encode_request(out, &header, body)?;
        Ok(correlation_id)
    }
}

/// A connection making one call at a time.
pub struct Connection {
    pub addr: String,
    pub versions: Versions,
    socket: Socket,
    encoder: Encoder,
    write_buf: BytesMut,
    reader: FrameReader,
}

impl Connection {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr).await.map_err(|err| anyhow!("cannot connect to {addr}: {err}"))?;
        stream.set_nodelay(true).map_err(|err| anyhow!("TCP_NODELAY: {err}"))?;
        let socket = Rc::new(RefCell::new(stream));
        let mut connection = Connection {
            addr: addr.to_owned(),
            versions: Versions::default(),
            socket: socket.clone(),
            encoder: Encoder { client_id: StrBytes::from_string(client_id.to_owned()), next_correlation_id: 1 },
            write_buf: BytesMut::with_capacity(64 * 1024),
            reader: FrameReader::new(socket),
        };
        connection.versions = connection.negotiate().await.with_context(|| format!("ApiVersions with {addr}"))?;
        Ok(connection)
    }

    async fn negotiate(&mut self) -> anyhow::Result<Versions> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("stele-loadgen");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut answer =
            self.call_at(ApiKey::ApiVersions, API_VERSIONS_FIRST, RequestKind::ApiVersions(request)).await?;
        if let ResponseKind::ApiVersions(response) = &answer {
            if response.error_code == UNSUPPORTED_VERSION {
                let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
                answer = self.call_at(ApiKey::ApiVersions, 0, request).await?;
            }
        }
        let ResponseKind::ApiVersions(response) = answer else { bail!("ApiVersions answered with another API") };
        if response.error_code != 0 {
            bail!("ApiVersions failed with error code {}", response.error_code);
        }
        Ok(Versions::negotiate(response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version))))
    }

    /// One request at the negotiated version, and its answer.
    pub async fn call(&mut self, api_key: ApiKey, body: RequestKind) -> anyhow::Result<ResponseKind> {
        let version = self.versions.get(api_key)?;
        self.call_at(api_key, version, body).await
    }

    async fn call_at(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> anyhow::Result<ResponseKind> {
        self.write_buf.clear();
        let correlation_id = self.encoder.encode(&mut self.write_buf, api_key, version, &body)?;
        write_all(&self.socket, &self.write_buf)
            .await
            .with_context(|| format!("sending {api_key:?} to {}", self.addr))?;
        let frame =
            self.reader.next_frame().await.with_context(|| format!("reading {api_key:?} from {}", self.addr))?;
        let (answered, body) = protocol::decode_response(frame, api_key, version)?;
        if answered != correlation_id {
            bail!("{} answered correlation id {answered}, expected {correlation_id}", self.addr);
        }
        Ok(body)
    }

    /// Splits the connection for pipelining.
    pub fn split(self) -> (RequestWriter, ResponseReader) {
        let writer = RequestWriter {
            addr: self.addr.clone(),
            socket: self.socket,
            encoder: self.encoder,
            write_buf: self.write_buf,
        };
        (writer, ResponseReader { addr: self.addr, reader: self.reader })
    }
}

/// The sending half of a pipelined connection.
pub struct RequestWriter {
    pub addr: String,
    socket: Socket,
    encoder: Encoder,
    write_buf: BytesMut,
}

impl RequestWriter {
    /// Encodes and writes one request; returns its correlation id. The
    /// write buffer is reused, so a steady stream of requests allocates
    /// nothing for their bytes.
    pub async fn send(&mut self, api_key: ApiKey, version: i16, body: &RequestKind) -> anyhow::Result<i32> {
        self.write_buf.clear();
        let correlation_id = self.encoder.encode(&mut self.write_buf, api_key, version, body)?;
        write_all(&self.socket, &self.write_buf)
            .await
            .with_context(|| format!("sending {api_key:?} to {}", self.addr))?;
        Ok(correlation_id)
    }
}

/// The receiving half of a pipelined connection.
pub struct ResponseReader {
    pub addr: String,
    reader: FrameReader,
}

impl ResponseReader {
    /// Reads the answer to the oldest request in flight, which must carry
    /// `correlation_id`.
    pub async fn read(&mut self, api_key: ApiKey, version: i16, correlation_id: i32) -> anyhow::Result<ResponseKind> {
        let frame =
            self.reader.next_frame().await.with_context(|| format!("reading {api_key:?} from {}", self.addr))?;
        let (answered, body) = protocol::decode_response(frame, api_key, version)?;
        if answered != correlation_id {
            bail!("{} answered correlation id {answered}, expected {correlation_id} (answers out of order)", self.addr);
        }
        Ok(body)
    }
}

/// Cuts response frames off the socket, zero-copy.
struct FrameReader {
    socket: Socket,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl FrameReader {
    fn new(socket: Socket) -> FrameReader {
        FrameReader { socket, buf: BytesMut::with_capacity(READ_CHUNK_BYTES), decoder: FrameDecoder::default() }
    }

    async fn next_frame(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                return Ok(frame);
            }
            let filled = self.buf.len();
            self.buf.resize(filled + READ_CHUNK_BYTES, 0);
            let read =
                poll_fn(|cx| Pin::new(&mut *self.socket.borrow_mut()).poll_read(cx, &mut self.buf[filled..])).await;
            match read {
                Ok(0) => {
                    self.buf.truncate(filled);
                    bail!("the broker closed the connection");
                }
                Ok(read) => self.buf.truncate(filled + read),
                Err(err) => {
                    self.buf.truncate(filled);
                    return Err(err.into());
                }
            }
        }
    }
}

async fn write_all(socket: &RefCell<TcpStream>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written = poll_fn(|cx| Pin::new(&mut *socket.borrow_mut()).poll_write(cx, bytes)).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    poll_fn(|cx| Pin::new(&mut *socket.borrow_mut()).poll_flush(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_take_the_lower_maximum_where_ranges_overlap() {
        // Proves negotiation picks min(ours, broker max), skips APIs the
        // broker lacks, and refuses ranges that do not overlap.
        let versions = Versions::negotiate([(0, 3, 9), (1, 4, 20), (3, 14, 20)]);
        assert_eq!(versions.get(ApiKey::Produce).unwrap(), 9);
        assert_eq!(versions.get(ApiKey::Fetch).unwrap(), 16);
        assert!(versions.get(ApiKey::Metadata).is_err(), "broker min 14 above our max 13");
        assert!(versions.get(ApiKey::InitProducerId).is_err(), "not advertised");
    }
}
