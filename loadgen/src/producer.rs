//! A producer: records batched per partition, batches sent to their
//! leaders in pipelined Produce requests, answers matched in order by a
//! task per connection that records the produce latency of every record.
//!
//! Batching follows Kafka's producer: a partition's batch closes when it
//! reaches `--batch-bytes` (keyless records then move to the next
//! partition, as the sticky partitioner does); a broker's partitions are
//! sent together when one of its batches closed or the oldest open batch
//! has waited `--linger-ms`; each request takes at most one batch per
//! partition (Kafka's rule for v2 batches). While `--in-flight` requests
//! wait for answers, closed batches queue, up to `--buffer-bytes-max`,
//! after which the producer waits for the broker (Kafka's buffer.memory).
//!
//! With a target rate each record has an intended send time on a fixed
//! schedule; its value carries that time and its latency is measured
//! from it, so a stall that delays sending shows in the latency instead of
//! being hidden (coordinated omission). Unlimited, the send time is when
//! the record was appended. The producer sleeps at least
//! [`RATE_SLEEP_MIN_NS`] at a time and then appends every record due, so
//! that a high rate costs thousands of timer wake-ups a second rather than
//! one per record (at 50 MiB/s of 1 KiB records, one per record kept
//! loadgen's core 80% busy in system calls); a record appended up to that
//! long after its intended time counts the delay in its latency.
//!
//! With `--transaction-records N` each producer is transactional: a
//! partition is added to the transaction (AddPartitionsToTxn) before its
//! first batch in it is sent, and after every N records all batches are
//! sent and acknowledged and the transaction committed (EndTxn); a
//! transaction in which a batch failed is aborted instead. The time from a
//! transaction's first record to its commit's answer is the transaction
//! latency. Producing waits during the commit, as Kafka's producer does.
//!
//! The hot path allocates nothing per record: batches are written into
//! reused buffers, send times into pooled vectors.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::{Semaphore, StaticPermit};
use glommio::task::JoinHandle;
use protocol::compression::Codec;
use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind, TopicName};
use protocol::StrBytes;

use crate::batch::{BatchBuilder, Partitioner, ProducerFields, STAMP_BYTES};
use crate::cli::{Acks, Cli};
use crate::clock::{self, NS_PER_MS};
use crate::cluster::{self, Cluster};
use crate::connection::{Connection, RequestWriter, ResponseReader};
use crate::stats::{Recorder, Stats};
use crate::transaction::Transactions;

/// Kafka's DUPLICATE_SEQUENCE_NUMBER: the batch was already written, a success.
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
/// Records appended between checks of lingering batches and the stop flag.
const RECORDS_PER_CHECK: u64 = 64;

/// Shortest sleep of a producer at a fixed rate: 100 µs.
const RATE_SLEEP_MIN_NS: u64 = 100_000;

type TimesPool = Rc<RefCell<Vec<Vec<u64>>>>;

/// A closed batch waiting for a request.
struct Finished {
    bytes: Bytes,
    times: Vec<u64>,
    records: u32,
    payload_bytes: u64,
}

struct PartitionState {
    index: i32,
    node: usize,
    builder: BatchBuilder,
    /// Intended send time of each record in the open batch.
    times: Vec<u64>,
    payload_bytes: u64,
    opened_ns: u64,
    next_sequence: i32,
    queued: VecDeque<Finished>,
    /// Added to the ongoing transaction (transactional producers).
    in_transaction: bool,
}

/// What the acknowledging task needs to know about a request.
struct InFlight {
    correlation_id: i32,
    version: i16,
    batches: Vec<SentBatch>,
    _permit: StaticPermit,
}

struct SentBatch {
    partition: i32,
    records: u32,
    payload_bytes: u64,
    times: Vec<u64>,
}

/// One leader broker, as this producer sees it.
struct Node {
    writer: RequestWriter,
    version: i16,
    partitions: Vec<usize>,
    next_first: usize,
    permits: Rc<Semaphore>,
    /// None with acks=0: no answers come.
    in_flight: Option<LocalSender<InFlight>>,
    acker: Option<JoinHandle<()>>,
    oldest_open_ns: Option<u64>,
    queued_batches: usize,
}

impl Node {
    /// Whether this broker has something to send at `now_ns`: a closed
    /// batch, or an open one that has lingered `linger_ns`.
    fn has_due_batch(&self, now_ns: u64, linger_ns: u64) -> bool {
        self.queued_batches > 0 || self.oldest_open_ns.is_some_and(|t| now_ns >= t.saturating_add(linger_ns))
    }
}

pub struct Producer {
    cli: Arc<Cli>,
    stats: Arc<Stats>,
    codec: Codec,
    producer: ProducerFields,
    topic_name: TopicName,
    topic_id: uuid::Uuid,
    nodes: Vec<Node>,
    partitions: Vec<PartitionState>,
    queued_bytes: usize,
    times_pool: TimesPool,
    payload: Vec<u8>,
    linger_ns: u64,
    transaction: Option<OngoingTransactions>,
}

/// A transactional producer's state between its control requests.
struct OngoingTransactions {
    control: Transactions,
    transactional_id: protocol::messages::TransactionalId,
    /// Records appended to the ongoing transaction, and when its first was.
    records: u64,
    started_ns: u64,
    /// Produce errors counted when the transaction began: more at its end
    /// mean a batch failed, and it is aborted.
    errors_at_start: u64,
    /// Partitions to add before the request being built is sent; reused.
    to_add: Vec<i32>,
}

/// Runs producer `index`: `records_max` records, or until told to stop.
pub async fn run(cli: Arc<Cli>, cluster: Arc<Cluster>, stats: Arc<Stats>, index: usize) -> anyhow::Result<()> {
    let mut producer = Producer::connect(cli.clone(), &cluster, stats.clone(), index).await?;
    // In e2e the consumers find their start offsets before anything is sent.
    while stats.consumers_ready.load(std::sync::atomic::Ordering::Acquire) < cli.consumer_count() {
        if stats.aborted() {
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let share = |total: u64| total / cli.producers as u64 + u64::from((index as u64) < total % cli.producers as u64);
    let records_max = cli.records.map(share);
    let interval_ns = (cli.rate > 0.0).then(|| 1e9 * cli.producers as f64 / cli.rate);
    let result = producer.produce(records_max, interval_ns, index as u64).await;
    let result = match result {
        Ok(()) => producer.end_transaction().await,
        failed => failed,
    };
    let finished = producer.finish().await;
    stats.producers_done.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    result.and(finished)
}

impl Producer {
    async fn connect(cli: Arc<Cli>, cluster: &Cluster, stats: Arc<Stats>, index: usize) -> anyhow::Result<Producer> {
        let times_pool: TimesPool = Rc::default();
        let mut producer = ProducerFields::NONE;
        let transaction = match cli.transaction_records {
            None => None,
            Some(_) => {
                // Unique per run and producer: a rerun does not fence a
                // producer of another loadgen still running.
                let id = format!("{}-{}-{index}", cli.client_id, std::process::id());
                let control = Transactions::start(&cli, &cluster.topic, id.clone()).await?;
                producer = ProducerFields {
                    producer_id: control.producer_id,
                    producer_epoch: control.producer_epoch,
                    base_sequence: 0,
                    transactional: true,
                };
                Some(OngoingTransactions {
                    control,
                    transactional_id: protocol::messages::TransactionalId(StrBytes::from_string(id)),
                    records: 0,
                    started_ns: 0,
                    errors_at_start: 0,
                    to_add: Vec::new(),
                })
            }
        };
        let mut nodes = Vec::new();
        let mut partitions: Vec<PartitionState> = Vec::new();
        let batch_capacity = cli.batch_bytes + cli.record_size + 64;
        for (index, p) in cluster.partitions.iter().enumerate() {
            partitions.push(PartitionState {
                index: p.index,
                node: usize::MAX,
                builder: BatchBuilder::new(batch_capacity),
                times: Vec::new(),
                payload_bytes: 0,
                opened_ns: 0,
                next_sequence: 0,
                queued: VecDeque::new(),
                in_transaction: false,
            });
            debug_assert_eq!(partitions[index].index, p.index);
        }
        for (leader, members) in cluster.by_leader(|_| true) {
            let mut connection = Connection::connect(cluster.broker_addr(leader)?, &cli.client_id).await?;
            if cli.idempotent && producer.producer_id < 0 {
                let (producer_id, producer_epoch) = cluster::init_producer_id(&mut connection).await?;
                producer = ProducerFields { producer_id, producer_epoch, base_sequence: 0, transactional: false };
            }
            let mut version = connection.versions.get(ApiKey::Produce)?;
            if transaction.is_some() {
                // v12 says the client runs KIP-890 part 2 transactions
                // (partitions added implicitly); these add them explicitly.
                version = version.min(11);
            }
            if cli.compression.codec() == Codec::Zstd && version < 7 {
                bail!("{} speaks Produce up to v{version}; zstd needs v7", connection.addr);
            }
            let (writer, reader) = connection.split();
            let permits = Rc::new(Semaphore::new(cli.in_flight as u64));
            let (in_flight, acker) = if cli.acks == Acks::None {
                (None, None)
            } else {
                let (sender, receiver) = local_channel::new_bounded(cli.in_flight);
                let task = acknowledge(reader, receiver, stats.clone(), times_pool.clone());
                (Some(sender), Some(glommio::spawn_local(task).detach()))
            };
            for &member in &members {
                partitions[member].node = nodes.len();
            }
            nodes.push(Node {
                writer,
                version,
                partitions: members,
                next_first: 0,
                permits,
                in_flight,
                acker,
                oldest_open_ns: None,
                queued_batches: 0,
            });
        }
        let payload = (0..cli.record_size - STAMP_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
        Ok(Producer {
            codec: cli.compression.codec(),
            linger_ns: (cli.linger_ms * NS_PER_MS as f64) as u64,
            producer,
            topic_name: TopicName(StrBytes::from_string(cluster.topic.clone())),
            topic_id: cluster.topic_id,
            nodes,
            partitions,
            queued_bytes: 0,
            times_pool,
            payload,
            cli,
            stats,
            transaction,
        })
    }

    async fn produce(&mut self, records_max: Option<u64>, interval_ns: Option<f64>, seed: u64) -> anyhow::Result<()> {
        let mut partitioner = Partitioner::new(self.cli.keys, self.partitions.len(), seed.wrapping_mul(0x9e37_79b9));
        let start_ns = self.stats.start();
        let mut sent: u64 = 0;
        loop {
            if records_max.is_some_and(|max| sent >= max) || self.stats.should_stop_producing() {
                return Ok(());
            }
            let now = clock::now_ns();
            let intended = interval_ns.map_or(now, |interval| start_ns + (sent as f64 * interval) as u64);
            if intended > now {
                self.send_due(now, false).await?;
                let linger_deadline = self.nodes.iter().filter_map(|n| n.oldest_open_ns).min();
                let wake = intended.min(linger_deadline.map_or(u64::MAX, |t| t + self.linger_ns));
                if wake > now {
                    let nap = (wake - now).max(RATE_SLEEP_MIN_NS);
                    glommio::timer::sleep(Duration::from_nanos(nap)).await;
                } else {
                    // A batch has lingered long enough but its broker has no
                    // permit left: wait for an answer (or the next record's
                    // time) rather than spin, which would starve the task
                    // that reads the answers and so hand back the permits.
                    self.wait_for_permit(now, intended).await?;
                }
                continue;
            }
            let (p, key) = partitioner.next();
            let key_bytes = key.map_or(0, <[u8]>::len);
            let state = &mut self.partitions[p];
            if state.builder.is_empty() {
                state.opened_ns = now;
                self.nodes[state.node].oldest_open_ns.get_or_insert(now);
            }
            state.builder.push((now / NS_PER_MS) as i64, key, intended, &self.payload);
            state.times.push(intended);
            state.payload_bytes += (key_bytes + self.cli.record_size) as u64;
            sent += 1;
            if let Some(ongoing) = &mut self.transaction {
                if ongoing.records == 0 {
                    ongoing.started_ns = intended;
                    ongoing.errors_at_start = self.stats.produce_errors.load(std::sync::atomic::Ordering::Relaxed);
                }
                ongoing.records += 1;
                if self.cli.transaction_records.is_some_and(|size| ongoing.records >= size) {
                    self.end_transaction().await?;
                    continue;
                }
            }
            let closed = state.builder.size_bytes() >= self.cli.batch_bytes;
            if closed {
                partitioner.batch_closed(p);
                self.close_batch(p)?;
            }
            if closed || sent % RECORDS_PER_CHECK == 0 {
                self.send_due(now, false).await?;
                glommio::yield_if_needed().await;
            }
        }
    }

    /// Sends every batch of the ongoing transaction, waits until each is
    /// answered, and commits it (aborts it when a batch failed). Nothing
    /// to do for a plain producer or without an ongoing transaction.
    async fn end_transaction(&mut self) -> anyhow::Result<()> {
        if self.transaction.as_ref().is_none_or(|ongoing| ongoing.records == 0) || self.stats.aborted() {
            return Ok(());
        }
        self.send_due(u64::MAX, true).await?;
        for node in &self.nodes {
            // Every request's permit is back once its answer was read.
            let all = node.permits.acquire_permit(self.cli.in_flight as u64).await;
            drop(all.map_err(|err| anyhow::anyhow!("{err}"))?);
        }
        let ongoing = self.transaction.as_mut().expect("a transactional producer");
        let failed = self.stats.produce_errors.load(std::sync::atomic::Ordering::Relaxed) > ongoing.errors_at_start;
        ongoing.control.end(!failed).await?;
        let now = clock::now_ns();
        self.stats.transaction_ended(!failed, now.saturating_sub(ongoing.started_ns), self.stats.is_measured(now));
        ongoing.records = 0;
        for state in &mut self.partitions {
            state.in_transaction = false;
        }
        Ok(())
    }

    /// Sends everything left, waits for the answers, and stops the ackers.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let flushed = if self.stats.aborted() { Ok(()) } else { self.send_due(u64::MAX, true).await };
        for node in &mut self.nodes {
            node.in_flight = None; // closes the channel: the acker ends after the last answer
            if let Some(acker) = node.acker.take() {
                acker.await;
            }
        }
        flushed
    }

    /// Turns a partition's open batch into a queued one.
    fn close_batch(&mut self, p: usize) -> anyhow::Result<()> {
        let finished = self.finish_batch(p)?;
        self.queued_bytes += finished.bytes.len();
        let state = &mut self.partitions[p];
        state.queued.push_back(finished);
        self.nodes[state.node].queued_batches += 1;
        Ok(())
    }

    fn finish_batch(&mut self, p: usize) -> anyhow::Result<Finished> {
        let state = &mut self.partitions[p];
        let records = state.builder.records_count();
        let fields = if self.producer.producer_id >= 0 {
            ProducerFields { base_sequence: state.next_sequence, ..self.producer }
        } else {
            ProducerFields::NONE
        };
        let bytes = state.builder.finish(self.codec, fields)?;
        // Kafka's sequences wrap from i32::MAX to 0.
        state.next_sequence = ((i64::from(state.next_sequence) + i64::from(records)) % (1i64 << 31)) as i32;
        let fresh = self.times_pool.borrow_mut().pop().unwrap_or_default();
        let times = std::mem::replace(&mut state.times, fresh);
        Ok(Finished { bytes, times, records: records as u32, payload_bytes: std::mem::take(&mut state.payload_bytes) })
    }

    /// Sends requests to every broker that has a closed batch or a batch
    /// older than the linger time, while permits allow; with `flush_all`,
    /// sends everything, waiting for permits.
    async fn send_due(&mut self, now_ns: u64, flush_all: bool) -> anyhow::Result<()> {
        for n in 0..self.nodes.len() {
            loop {
                let node = &self.nodes[n];
                if !node.has_due_batch(now_ns, self.linger_ns) {
                    break;
                }
                let must_wait = flush_all || self.queued_bytes >= self.cli.buffer_bytes_max;
                let permit = match node.permits.try_acquire_static_permit(1) {
                    Ok(permit) => permit,
                    Err(_) if must_wait => {
                        node.permits.acquire_static_permit(1).await.map_err(|err| anyhow::anyhow!("{err}"))?
                    }
                    Err(_) => break,
                };
                self.send_request(n, permit).await?;
            }
        }
        Ok(())
    }

    /// Waits until a broker with a lingered batch has a permit, and sends
    /// its request, or until `until_ns`, whichever comes first.
    async fn wait_for_permit(&mut self, now_ns: u64, until_ns: u64) -> anyhow::Result<()> {
        let Some(n) = self.nodes.iter().position(|node| node.has_due_batch(now_ns, self.linger_ns)) else {
            return Ok(());
        };
        let permits = self.nodes[n].permits.clone();
        let permit = async { Some(permits.acquire_static_permit(1).await) };
        let timeout = async {
            glommio::timer::sleep(Duration::from_nanos(until_ns.saturating_sub(now_ns))).await;
            None
        };
        match futures_lite::future::or(permit, timeout).await {
            Some(permit) => self.send_request(n, permit.map_err(|err| anyhow::anyhow!("{err}"))?).await,
            None => Ok(()),
        }
    }

    /// One Produce request to node `n`: per partition, its oldest queued
    /// batch or else its open one, within `--request-bytes-max`.
    async fn send_request(&mut self, n: usize, permit: StaticPermit) -> anyhow::Result<()> {
        let count = self.nodes[n].partitions.len();
        let first = self.nodes[n].next_first;
        self.nodes[n].next_first = (first + 1) % count;
        let mut partition_data = Vec::new();
        let mut batches = Vec::new();
        let mut request_bytes = 0;
        for i in 0..count {
            let p = self.nodes[n].partitions[(first + i) % count];
            let state = &mut self.partitions[p];
            let next_bytes = match state.queued.front() {
                Some(queued) => queued.bytes.len(),
                None if !state.builder.is_empty() => state.builder.size_bytes(),
                None => continue,
            };
            if request_bytes + next_bytes > self.cli.request_bytes_max && !batches.is_empty() {
                continue;
            }
            let finished = match state.queued.pop_front() {
                Some(queued) => {
                    self.nodes[n].queued_batches -= 1;
                    self.queued_bytes -= queued.bytes.len();
                    queued
                }
                None => self.finish_batch(p)?,
            };
            if let Some(ongoing) = &mut self.transaction {
                if !std::mem::replace(&mut self.partitions[p].in_transaction, true) {
                    ongoing.to_add.push(self.partitions[p].index);
                }
            }
            request_bytes += finished.bytes.len();
            let mut data = PartitionProduceData::default();
            data.index = self.partitions[p].index;
            data.records = Some(finished.bytes);
            partition_data.push(data);
            batches.push(SentBatch {
                partition: self.partitions[p].index,
                records: finished.records,
                payload_bytes: finished.payload_bytes,
                times: finished.times,
            });
        }
        if let Some(ongoing) = self.transaction.as_mut().filter(|ongoing| !ongoing.to_add.is_empty()) {
            ongoing.control.add_partitions(&ongoing.to_add).await?;
            ongoing.to_add.clear();
        }
        let oldest = self.nodes[n].partitions.iter().map(|&p| &self.partitions[p]);
        self.nodes[n].oldest_open_ns = oldest.filter(|s| !s.builder.is_empty()).map(|s| s.opened_ns).min();
        let mut topic = TopicProduceData::default();
        topic.name = self.topic_name.clone();
        topic.topic_id = self.topic_id;
        topic.partition_data = partition_data;
        let mut request = ProduceRequest::default();
        request.acks = self.cli.acks.wire();
        request.timeout_ms = self.cli.timeout_ms;
        request.topic_data = vec![topic];
        request.transactional_id = self.transaction.as_ref().map(|ongoing| ongoing.transactional_id.clone());
        let body = RequestKind::Produce(request);
        let node = &mut self.nodes[n];
        let correlation_id = node.writer.send(ApiKey::Produce, node.version, &body).await?;
        // The batches' bytes are in the socket now; dropping them lets each
        // builder reuse its buffer.
        drop(body);
        let version = node.version;
        match &node.in_flight {
            Some(in_flight) => {
                let sent = InFlight { correlation_id, version, batches, _permit: permit };
                if in_flight.send(sent).await.is_err() {
                    bail!("the task reading produce answers from {} stopped", node.writer.addr);
                }
            }
            None => self.written_without_acks(batches),
        }
        Ok(())
    }

    /// acks=0: a record counts as produced once it is written.
    fn written_without_acks(&mut self, batches: Vec<SentBatch>) {
        let measured = self.stats.is_measured(clock::now_ns());
        let mut pool = self.times_pool.borrow_mut();
        for mut batch in batches {
            self.stats.produced.add(u64::from(batch.records), batch.payload_bytes);
            if measured {
                self.stats.produced_measured.add(u64::from(batch.records), batch.payload_bytes);
            }
            batch.times.clear();
            pool.push(batch.times);
        }
    }
}

/// Reads a connection's produce answers in order and records each
/// record's latency. Ends when the producer closes the channel, or on the
/// first error, which stops the run.
async fn acknowledge(
    mut reader: ResponseReader,
    requests: LocalReceiver<InFlight>,
    stats: Arc<Stats>,
    pool: TimesPool,
) {
    let mut recorder = Recorder::new();
    while let Some(in_flight) = requests.recv().await {
        if let Err(err) = acknowledge_one(&mut reader, in_flight, &stats, &pool, &mut recorder).await {
            stats.fail(format!("producer: {err:#}"));
            break;
        }
    }
    recorder.merge(&stats, clock::now_ns());
}

async fn acknowledge_one(
    reader: &mut ResponseReader,
    mut in_flight: InFlight,
    stats: &Stats,
    pool: &TimesPool,
    recorder: &mut Recorder,
) -> anyhow::Result<()> {
    let answer = reader.read(ApiKey::Produce, in_flight.version, in_flight.correlation_id).await?;
    let ResponseKind::Produce(response) = answer else { bail!("Produce answered with another API") };
    let now = clock::now_ns();
    let measured = stats.is_measured(now);
    let answers: Vec<(i32, i16)> = response
        .responses
        .iter()
        .flat_map(|topic| topic.partition_responses.iter().map(|p| (p.index, p.error_code)))
        .collect();
    for (i, batch) in in_flight.batches.iter_mut().enumerate() {
        let code = match answers.get(i) {
            Some(&(index, code)) if index == batch.partition => code,
            _ => answers
                .iter()
                .find(|(index, _)| *index == batch.partition)
                .map(|&(_, code)| code)
                .with_context(|| format!("no produce answer for partition {}", batch.partition))?,
        };
        if code == 0 || code == DUPLICATE_SEQUENCE_NUMBER {
            for &sent in &batch.times {
                recorder.produce(now.saturating_sub(sent), measured);
            }
            stats.produced.add(u64::from(batch.records), batch.payload_bytes);
            if measured {
                stats.produced_measured.add(u64::from(batch.records), batch.payload_bytes);
            }
        } else {
            stats.produce_error(code, u64::from(batch.records));
        }
        let mut times = std::mem::take(&mut batch.times);
        times.clear();
        pool.borrow_mut().push(times);
    }
    recorder.maybe_merge(stats, now);
    Ok(())
}
