//! One client connection, on the shard that accepted it.
//!
//! Two tasks share the socket: the reader cuts frames, decodes them and
//! runs each request's handler in arrival order (so a producer's batches
//! reach the log in the order it sent them), and the writer sends the
//! answers in the same order, waiting where an answer is deferred (acks=all
//! waits for fdatasync there, so a connection can have several produce
//! requests waiting for durability while the next ones are appended).
//!
//! Bounds: the read buffer holds at most one request of
//! `request_bytes_max` plus one read; at most
//! `requests_in_flight_per_connection_max` answers wait to be written, after
//! which the reader stops reading. A frame that cannot be decoded closes
//! this connection only.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;

use bytes::BytesMut;
use futures::{AsyncRead, AsyncWrite};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use protocol::frame::FrameDecoder;
use protocol::messages::ApiKey;

use crate::handlers::{self, Reply};
use crate::shard::Shard;

/// Bytes asked of the socket per read: enough for many small pipelined
/// requests, little for an idle connection (thousands of them must be cheap).
const READ_CHUNK_BYTES_MIN: usize = 16 * 1024;
/// Largest single read, when a big request is arriving.
const READ_CHUNK_BYTES_MAX: usize = 1 << 20;
/// An empty read buffer larger than this is given back, so one big request
/// does not pin memory for the life of the connection.
const IDLE_BUFFER_BYTES_MAX: usize = 256 * 1024;

/// An answer queued for the writer: where it goes and what it is.
struct Queued {
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    reply: Reply,
}

/// Serves one connection until the client closes it, sends something that
/// cannot be decoded, or the broker stops.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "unknown".into());
    // Kafka prints a client's host as an InetAddress: "/127.0.0.1".
    let client_host = stream.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let socket = Rc::new(RefCell::new(stream));
    let (queue, answers) = local_channel::new_bounded(shard.config.requests_in_flight_per_connection_max);
    let writer = glommio::spawn_local(write_answers(socket.clone(), answers, peer.clone()));
    if let Err(reason) = read_requests(&shard, &socket, &queue, &client_host).await {
        tracing::info!(peer = %peer, shard = shard.id, "closing connection: {reason}");
    }
    // Closing the queue lets the writer finish the answers already queued.
    drop(queue);
    writer.await;
    // Dropping the last reference to the socket closes it.
}

async fn read_requests(
    shard: &Rc<Shard>,
    socket: &Rc<RefCell<TcpStream>>,
    queue: &local_channel::LocalSender<Queued>,
    client_host: &str,
) -> Result<(), String> {
    let decoder = FrameDecoder::new(shard.config.request_bytes_max);
    let mut buf = BytesMut::new();
    loop {
        while let Some(frame) = decoder.decode(&mut buf).map_err(|err| err.to_string())? {
            let request = protocol::decode_request(frame).map_err(|err| err.to_string())?;
            if request.api_key != ApiKey::ApiVersions {
                let share_groups = shard.config.groups.share_enable;
                protocol::api::check_advertised(request.api_key, request.api_version(), share_groups)
                    .map_err(|err| err.to_string())?;
            }
            let (correlation_id, api_key, api_version) =
                (request.correlation_id(), request.api_key, request.api_version());
            let reply = handlers::handle(shard, client_host, request).await;
            if let Reply::Close(reason) = reply {
                return Err(reason);
            }
            let queued = Queued { correlation_id, api_key, api_version, reply };
            if queue.send(queued).await.is_err() {
                return Err("writer stopped".into());
            }
        }
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER_BYTES_MAX {
            buf = BytesMut::new();
        }
        let len = buf.len();
        buf.resize(len + read_chunk_bytes(&buf), 0);
        let read = {
            let read = std::pin::pin!(read_some(socket, &mut buf[len..]));
            let stop = std::pin::pin!(shard.stopping.wait());
            match futures::future::select(read, stop).await {
                futures::future::Either::Left((read, _)) => read,
                // Shutting down: what was not read yet was not acknowledged.
                futures::future::Either::Right(_) => return Ok(()),
            }
        };
        match read {
            Ok(0) => {
                buf.truncate(len);
                return if len == 0 {
                    Ok(())
                } else {
                    Err(format!("closed by the client inside a frame ({len} bytes)"))
                };
            }
            Ok(n) => buf.truncate(len + n),
            Err(err) => return Err(format!("read failed: {err}")),
        }
    }
}

/// How much to read next: the rest of the frame being received (its size
/// prefix was already checked by the decoder), within the chunk bounds.
fn read_chunk_bytes(buf: &[u8]) -> usize {
    let Some(prefix) = buf.get(..4) else {
        return READ_CHUNK_BYTES_MIN;
    };
    let frame_bytes = 4 + i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]).max(0) as usize;
    frame_bytes.saturating_sub(buf.len()).clamp(READ_CHUNK_BYTES_MIN, READ_CHUNK_BYTES_MAX)
}

async fn write_answers(socket: Rc<RefCell<TcpStream>>, answers: local_channel::LocalReceiver<Queued>, peer: String) {
    let mut out = BytesMut::new();
    while let Some(queued) = answers.recv().await {
        let Some((version, body)) = queued.reply.resolve().await else {
            continue;
        };
        let version = version.unwrap_or(queued.api_version);
        out.clear();
        if let Err(err) = protocol::encode_response(&mut out, queued.correlation_id, queued.api_key, version, &body) {
            // Our bug, not the client's: say so and drop the connection,
            // since the client would wait for this answer forever.
            tracing::error!(peer = %peer, error = %err, "encoding a response failed");
            return;
        }
        if let Err(err) = write_all(&socket, &out).await {
            tracing::debug!(peer = %peer, error = %err, "write failed");
            return;
        }
        if out.capacity() > IDLE_BUFFER_BYTES_MAX {
            out = BytesMut::new();
        }
    }
}

/// Reads into `buf` without holding the socket across the await: the
/// borrow lasts one poll, so the writer task can use the socket in between.
async fn read_some(socket: &RefCell<TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *socket.borrow_mut()).poll_read(cx, buf)).await
}

async fn write_all(socket: &RefCell<TcpStream>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let written = poll_fn(|cx| Pin::new(&mut *socket.borrow_mut()).poll_write(cx, bytes)).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[written..];
    }
    Ok(())
}
