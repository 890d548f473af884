mod common;
use common::*;
use engine::PartitionLog;

#[test]
fn append_read_close_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = PartitionLog::open(&path, small_config(), shard()).await.unwrap();
        for i in 0..100u64 {
            let info = log.append(batch(3, 1000 + i as i64, i, 500)).await.unwrap();
            assert_eq!(info.base_offset, i as i64 * 3);
        }
        log.flush().await.unwrap();
        let read = log.read(0, 1 << 20, None).await.unwrap();
        assert_eq!(tags(&read), (0..100).collect::<Vec<_>>());
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config(), shard()).await.unwrap();
        assert_eq!(log.log_end_offset(), 300);
        let read = log.read(150, 1 << 20, None).await.unwrap();
        assert_eq!(tags(&read)[0], 50);
        println!("{:?}", log.segments());
    });
}
