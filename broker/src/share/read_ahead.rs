//! How a share-partition reads its partition's log for acquisitions.
//!
//! Members acquire one after another from the same place in the log (the
//! window's end), each a few hundred records. Reading the log per
//! acquisition read each batch about twice (a read sized for one
//! acquisition, half of it dropped) and left the disk idle while the
//! read's records were handed out. So the [`Reader`] reads for several
//! acquisitions at once ([`read_bytes`]), keeps the read's batches for the
//! acquisitions that follow (a kept read), and while they are served
//! already reads the batches after them (a prefetch): each batch is read
//! about once, and the disk works while members take records.
//!
//! Why kept batches stay valid: records do not change below the high
//! watermark, nor their classification (control, aborted) below the last
//! stable offset, so a kept batch is what a new read would return. The
//! acquisition still decides from the share state which records may be
//! taken. Memory: at most two reads per share-partition, each at most
//! [`READ_BYTES_MAX`], dropped once the window passes them or when no
//! acquisition used them for a second (the lock-expiry sweep).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::record_batch;
use protocol::ErrorCode;

use super::state::{AcquiredRange, BatchInfo, BatchKind};
use crate::aborted_index::AbortedTxn;
use crate::partition::{FetchOutcome, IsolationLevel, Partition};

/// The first read of a share-partition, before its record size is known.
const FIRST_READ_BYTES: usize = 1 << 20;
/// The smallest read.
const READ_BYTES_MIN: usize = 16 << 10;
/// The largest read, which bounds what a share-partition holds read.
pub const READ_BYTES_MAX: usize = 8 << 20;
/// How many acquisitions of `max_records` one log read is sized for.
const ACQUISITIONS_PER_READ: f64 = 4.0;

/// How many bytes one log read asks for. ShareFetch v1 has only a
/// request-wide MaxBytes (50 MiB from librdkafka), and the log read copies
/// what it returns, so reading up to MaxBytes to acquire a few hundred
/// records spent the broker's time copying data it then dropped. Sized
/// for [`ACQUISITIONS_PER_READ`] acquisitions at the last read's bytes per
/// record, within [`READ_BYTES_MIN`], [`READ_BYTES_MAX`] and `max_bytes`.
fn read_bytes(bytes_per_record: f64, max_records: usize, max_bytes: usize) -> usize {
    let wanted = if bytes_per_record > 0.0 {
        (bytes_per_record * max_records as f64 * ACQUISITIONS_PER_READ).min(usize::MAX as f64) as usize
    } else {
        FIRST_READ_BYTES
    };
    wanted.clamp(READ_BYTES_MIN, READ_BYTES_MAX).min(max_bytes.max(1))
}

/// One batch of a log read: its offsets and kind, and its bytes' range in
/// the read's records.
#[derive(Debug, Clone, Copy)]
pub struct ReadBatch {
    pub info: BatchInfo,
    start: usize,
    end: usize,
}

/// What an acquisition works on: a log read's batches from the one holding
/// the acquisition's offset on.
pub struct Read {
    records: Bytes,
    batches: Rc<[ReadBatch]>,
    first: usize,
}

impl Read {
    pub fn batches(&self) -> &[ReadBatch] {
        &self.batches[self.first..]
    }

    /// The batches from the first to the last holding an acquired offset
    /// (zero-copy; batches between them that hold none are kept).
    pub fn slice_acquired(&self, acquired: &[AcquiredRange]) -> Option<Bytes> {
        let (first, last) = (acquired.first()?.first_offset, acquired.last()?.last_offset);
        let batches = self.batches();
        let start = batches.iter().find(|batch| batch.info.last_offset >= first)?.start;
        let end = batches.iter().rev().find(|batch| batch.info.base_offset <= last)?.end;
        (start < end).then(|| self.records.slice(start..end))
    }
}

/// A finished read kept for the acquisitions after the one that made it.
struct Kept {
    isolation: IsolationLevel,
    records: Bytes,
    batches: Rc<[ReadBatch]>,
}

impl Kept {
    /// The index of the batch holding `offset`, when this read holds it.
    fn batch_holding(&self, offset: i64, isolation: IsolationLevel) -> Option<usize> {
        if self.isolation != isolation || self.starts_after(offset) {
            return None;
        }
        self.batches.iter().position(|batch| batch.info.last_offset >= offset)
    }

    /// Whether the read begins above `offset`.
    fn starts_after(&self, offset: i64) -> bool {
        self.batches.first().is_some_and(|batch| batch.info.base_offset > offset)
    }

    /// The offset after the read's last batch.
    fn end_offset(&self) -> Option<i64> {
        self.batches.last().map(|batch| batch.info.last_offset + 1)
    }
}

/// A read running in the background, from the offset after the kept read.
struct Prefetch {
    offset: i64,
    isolation: IsolationLevel,
    task: glommio::Task<FetchOutcome>,
}

impl Prefetch {
    /// Lets the read finish on its own and drops what it returns, rather
    /// than cancelling a log read halfway.
    fn abandon(self) {
        self.task.detach();
    }
}

/// Reads one partition's log for one share-partition's acquisitions. The
/// share-partition asks [`Reader::kept`] first and calls [`Reader::read`]
/// when it has nothing, for one acquisition at a time.
pub struct Reader {
    partition: Rc<Partition>,
    /// Bytes per record in the last read, to size the next one; 0 before
    /// the first.
    bytes_per_record: Cell<f64>,
    kept: RefCell<Option<Kept>>,
    next: RefCell<Option<Prefetch>>,
    /// When an acquisition last asked for batches.
    last_used: Cell<Instant>,
}

impl Reader {
    pub fn new(partition: Rc<Partition>) -> Reader {
        Reader {
            partition,
            bytes_per_record: Cell::new(0.0),
            kept: RefCell::new(None),
            next: RefCell::new(None),
            last_used: Cell::new(Instant::now()),
        }
    }

    /// The log's batches from the one holding `offset` on, visible at
    /// `isolation`, when [`Self::kept`] had none: from the prefetch when it
    /// starts there, else from a new read of up to `max_bytes` sized for
    /// `max_records`. A read for an offset below the kept read (a record
    /// released or lapsed, delivered again) is made on the side: the kept
    /// read and the prefetch stay for the acquisitions at the window's end.
    /// Otherwise the new read is kept and the prefetch of what follows
    /// started. `Err(OffsetOutOfRange)` when the log start passed `offset`.
    pub async fn read(
        &self,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> Result<Read, ErrorCode> {
        self.last_used.set(Instant::now());
        let behind_kept = self.kept.borrow().as_ref().is_some_and(|kept| kept.starts_after(offset));
        if behind_kept {
            let (records, batches) = self.classified(self.fetch(offset, max_records, max_bytes, isolation).await)?;
            return Ok(Read { records, batches, first: 0 });
        }
        let prefetched = {
            let mut next = self.next.borrow_mut();
            match next.take() {
                Some(prefetch) if prefetch.offset == offset && prefetch.isolation == isolation => Some(prefetch.task),
                Some(elsewhere) => {
                    elsewhere.abandon();
                    None
                }
                None => None,
            }
        };
        let fetched = match prefetched {
            Some(task) => match task.await {
                fetched if fetched.error.is_none() => fetched,
                // Read again, to answer that read's error.
                _ => self.fetch(offset, max_records, max_bytes, isolation).await,
            },
            None => self.fetch(offset, max_records, max_bytes, isolation).await,
        };
        let (records, batches) = self.classified(fetched)?;
        *self.kept.borrow_mut() = Some(Kept { isolation, records: records.clone(), batches: batches.clone() });
        self.prefetch_after_kept(max_records, max_bytes);
        Ok(Read { records, batches, first: 0 })
    }

    /// A finished log read's records and classified batches; it also sizes
    /// the next read.
    fn classified(&self, fetched: FetchOutcome) -> Result<(Bytes, Rc<[ReadBatch]>), ErrorCode> {
        if let Some(error) = fetched.error {
            return Err(error);
        }
        let records = fetched.records.unwrap_or_default();
        let batches: Rc<[ReadBatch]> = classify(&records, fetched.aborted_transactions.as_deref()).into();
        let records_read: i64 = batches.iter().map(|batch| batch.info.last_offset - batch.info.base_offset + 1).sum();
        if records_read > 0 {
            self.bytes_per_record.set(records.len() as f64 / records_read as f64);
        }
        Ok((records, batches))
    }

    /// [`Self::read`] when the kept read holds `offset`: no I/O, no await.
    pub fn kept(&self, offset: i64, max_records: usize, max_bytes: usize, isolation: IsolationLevel) -> Option<Read> {
        self.last_used.set(Instant::now());
        let read = self.kept_from(offset, isolation)?;
        self.prefetch_after_kept(max_records, max_bytes);
        Some(read)
    }

    /// The first offset of the kept read, if there is one.
    #[cfg(test)]
    pub fn kept_start(&self) -> Option<i64> {
        self.kept.borrow().as_ref()?.batches.first().map(|batch| batch.info.base_offset)
    }

    /// Bytes of the kept read (a running prefetch's are not known yet).
    pub fn kept_bytes(&self) -> usize {
        self.kept.borrow().as_ref().map_or(0, |kept| kept.records.len())
    }

    /// Drops what was read when no acquisition asked for batches for
    /// `idle`: the consumers stopped or caught up, and an idle
    /// share-partition should not hold megabytes of the log.
    pub fn drop_if_idle(&self, idle: Duration) {
        if self.last_used.get().elapsed() >= idle {
            self.clear();
        }
    }

    /// Drops what was read (the share-partition's handle is dead, or idle).
    pub fn clear(&self) {
        self.kept.borrow_mut().take();
        if let Some(prefetch) = self.next.borrow_mut().take() {
            prefetch.abandon();
        }
    }

    fn fetch(
        &self,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
        isolation: IsolationLevel,
    ) -> impl std::future::Future<Output = FetchOutcome> + 'static {
        let read = read_bytes(self.bytes_per_record.get(), max_records, max_bytes);
        let partition = self.partition.clone();
        async move { partition.fetch(offset, read, isolation).await }
    }

    /// The kept read's batches from the one holding `offset`; a kept read
    /// that `offset` passed (or that another isolation made) is dropped,
    /// one that starts above `offset` is kept.
    fn kept_from(&self, offset: i64, isolation: IsolationLevel) -> Option<Read> {
        let mut kept = self.kept.borrow_mut();
        let read = kept.as_ref()?;
        match read.batch_holding(offset, isolation) {
            Some(first) => Some(Read { records: read.records.clone(), batches: read.batches.clone(), first }),
            None => {
                if read.isolation != isolation || !read.starts_after(offset) {
                    *kept = None;
                }
                None
            }
        }
    }

    /// Starts reading what follows the kept read, unless a read is already
    /// running or the log has nothing visible there yet.
    fn prefetch_after_kept(&self, max_records: usize, max_bytes: usize) {
        if self.next.borrow().is_some() {
            return;
        }
        let Some((offset, isolation)) =
            self.kept.borrow().as_ref().and_then(|kept| Some((kept.end_offset()?, kept.isolation)))
        else {
            return;
        };
        let visible_end = match isolation {
            IsolationLevel::ReadUncommitted => self.partition.high_watermark(),
            IsolationLevel::ReadCommitted => self.partition.last_stable_offset(),
        };
        if offset >= visible_end {
            return;
        }
        let task = glommio::spawn_local(self.fetch(offset, max_records, max_bytes, isolation));
        *self.next.borrow_mut() = Some(Prefetch { offset, isolation, task });
    }
}

/// Each read batch's offsets and kind, with its byte range in `records`.
/// read_committed (`aborted` is `Some`): a transactional batch of a
/// producer whose aborted transaction started at or before it, and has not
/// yet met that producer's marker, is Aborted (Kafka's consumer rule).
fn classify(records: &Bytes, aborted: Option<&[AbortedTxn]>) -> Vec<ReadBatch> {
    let mut pending: Vec<AbortedTxn> = aborted.map(<[AbortedTxn]>::to_vec).unwrap_or_default();
    pending.sort_by_key(|txn| std::cmp::Reverse(txn.first_offset));
    let mut aborted_producers: Vec<i64> = Vec::new();
    let mut batches = Vec::new();
    let mut position = 0usize;
    for batch in record_batch::batches(records.clone(), usize::MAX) {
        // What the log serves was validated when written; stop at anything else.
        let Ok(batch) = batch else { break };
        let (start, end) = (position, position + batch.bytes().len());
        position = end;
        while pending.last().is_some_and(|txn| txn.first_offset <= batch.last_offset()) {
            aborted_producers.push(pending.pop().expect("checked").producer_id);
        }
        let kind = if batch.is_control() {
            // The marker that ended the producer's aborted transaction.
            aborted_producers.retain(|producer| *producer != batch.producer_id());
            BatchKind::Control
        } else if aborted.is_some() && batch.is_transactional() && aborted_producers.contains(&batch.producer_id()) {
            BatchKind::Aborted
        } else {
            BatchKind::Data
        };
        let info = BatchInfo { base_offset: batch.base_offset(), last_offset: batch.last_offset(), kind };
        batches.push(ReadBatch { info, start, end });
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_sized_for_several_acquisitions_not_the_request_max() {
        // Proves the read size: 1 MiB before the record size is known,
        // then four times max_records at the last read's bytes per record,
        // never below 16 KiB nor above 8 MiB or max_bytes.
        let max = 50 << 20;
        assert_eq!(read_bytes(0.0, 500, max), 1 << 20);
        assert_eq!(read_bytes(1100.0, 500, max), 2_200_000);
        assert_eq!(read_bytes(10.0, 100, max), 16 << 10);
        assert_eq!(read_bytes(100_000.0, 500, max), 8 << 20);
        assert_eq!(read_bytes(1100.0, 500, 4096), 4096);
    }
}
