use super::*;
use crate::audit::{new_id, DecisionKind};
use prost::Message;

fn record(n: usize) -> AuditRecord {
    let mut record = AuditRecord {
        id: new_id(),
        node: "node-1".to_owned(),
        namespace: format!("ns-{n}"),
        image: format!("127.0.0.1:5000/app:{n:06}"),
        ..Default::default()
    };
    record.set_decision(DecisionKind::Allow);
    record
}

fn frame_len(record: &AuditRecord) -> u64 {
    frame::encode(record).unwrap().len() as u64
}

fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Spool {
    Spool::open(SpoolConfig {
        dir: dir.to_owned(),
        max_bytes,
        segment_bytes,
        journal_socket: None,
    })
    .unwrap()
}

fn read_all(spool: &Spool) -> Batch {
    spool.read(spool.cursor(), usize::MAX, usize::MAX).unwrap()
}

fn ids(batch: &Batch) -> Vec<String> {
    batch.records.iter().map(|r| r.id.clone()).collect()
}

#[tokio::test]
async fn records_survive_reopening_and_resume_after_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<AuditRecord> = (0..100).map(record).collect();
    {
        let spool = open(dir.path(), 1 << 20, 4096);
        for r in &written {
            spool.append(r).await.unwrap();
        }
        let batch = spool.read(spool.cursor(), 40, usize::MAX).unwrap();
        assert_eq!(batch.records.len(), 40);
        spool.acknowledge(batch.next).unwrap();
    }
    let spool = open(dir.path(), 1 << 20, 4096);
    let rest = read_all(&spool);
    let expected: Vec<String> = written[40..].iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids(&rest), expected);
    // Acknowledging everything deletes every closed segment.
    spool.acknowledge(rest.next).unwrap();
    assert!(read_all(&spool).records.is_empty());
    assert_eq!(spool.dropped_records(), 0);
}

/// Appends `n` records from as many tasks, each returning once its record is durable;
/// the ids, sorted.
async fn append_concurrently(spool: &Spool, n: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|n| {
            let spool = spool.clone();
            tokio::spawn(async move {
                let r = record(n);
                spool.append(&r).await.unwrap();
                r.id
            })
        })
        .collect();
    let mut expected = Vec::new();
    for task in tasks {
        expected.push(task.await.unwrap());
    }
    expected.sort();
    expected
}

fn sorted_ids(spool: &Spool) -> Vec<String> {
    let mut got = ids(&read_all(spool));
    got.sort();
    got
}

#[tokio::test]
async fn concurrent_appends_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 24, 1 << 20);
    let expected = append_concurrently(&spool, 200).await;
    assert_eq!(sorted_ids(&spool), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_written_in_place_and_by_the_writer_interleave_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: many appends find a rotation due and go to the writer thread,
    // while others are written in place beside them.
    let spool = open(dir.path(), 1 << 24, 2048);
    let expected = append_concurrently(&spool, 400).await;
    assert_eq!(sorted_ids(&spool), expected);
    assert!(spool.depth_bytes() > 0);
    drop(spool);
    // What was acknowledged as durable is what a restart finds, whole.
    let reopened = open(dir.path(), 1 << 24, 2048);
    assert_eq!(sorted_ids(&reopened), expected);
}

#[tokio::test]
async fn a_record_is_in_its_segment_when_the_append_returns_and_read_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 16);
    let r = record(1);
    let durable = spool.append_written(&r).await.unwrap();
    // Written to the segment (a crash of crigate cannot lose it) before the fsync: its
    // bytes are in the file.
    let segment = spool.shared.lock().active;
    let on_disk = std::fs::read(segment_path(dir.path(), segment)).unwrap();
    assert_eq!(on_disk.len() as u64, frame_len(&r));
    durable.await.unwrap();
    assert_eq!(ids(&read_all(&spool)), vec![r.id]);
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept: Vec<AuditRecord> = (0..3).map(record).collect();
    {
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        for r in &kept {
            spool.append(r).await.unwrap();
        }
    }
    let segment = segment_path(dir.path(), 1);
    let whole = fs::metadata(&segment).unwrap().len();
    // A crash mid-write: half of a fourth frame.
    let partial = frame::encode(&record(3)).unwrap();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&partial[..partial.len() / 2]).unwrap();
    drop(file);

    let spool = open(dir.path(), 1 << 20, 1 << 20);
    assert_eq!(fs::metadata(&segment).unwrap().len(), whole);
    let expected: Vec<String> = kept.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids(&read_all(&spool)), expected);
    // And new records go on after them.
    let next = record(4);
    spool.append(&next).await.unwrap();
    assert_eq!(read_all(&spool).records.last().unwrap().id, next.id);
}

#[tokio::test]
async fn a_corrupt_tail_frame_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        spool.append(&record(0)).await.unwrap();
        spool.append(&record(1)).await.unwrap();
    }
    let segment = segment_path(dir.path(), 1);
    let mut data = fs::read(&segment).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    fs::write(&segment, &data).unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 20);
    assert_eq!(read_all(&spool).records.len(), 1);
}

#[tokio::test]
async fn reaching_the_bound_drops_the_oldest_segment_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let size = frame_len(&record(0));
    // Two records per segment, three segments' worth of room.
    let spool = open(dir.path(), 6 * size, 2 * size);
    let written: Vec<AuditRecord> = (0..8).map(record).collect();
    for r in &written {
        spool.append(r).await.unwrap();
    }
    // Records 0-1 (the oldest segment) went when 6 did not fit; 7 then fit.
    assert_eq!(spool.dropped_records(), 2);
    assert!(spool.depth_bytes() <= 6 * size);
    let expected: Vec<String> = written[2..].iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids(&read_all(&spool)), expected);
}

/// The `.seg` files in `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_segment_deleted_by_hand_is_read_past_and_counted_lost() {
    let dir = tempfile::tempdir().unwrap();
    let size = frame_len(&record(0));
    // Two records per segment.
    let spool = open(dir.path(), 1 << 20, 2 * size);
    let written: Vec<AuditRecord> = (0..6).map(record).collect();
    for r in &written {
        spool.append(r).await.unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    std::fs::remove_file(&files[1]).unwrap();
    // Read on a thread of its own: a read that never ends fails the test, not CI.
    let (sender, receiver) = std::sync::mpsc::channel();
    let reader = spool.clone();
    std::thread::spawn(move || {
        let _ = sender.send(read_all(&reader));
    });
    let batch = receiver
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the read did not end");
    let expected: Vec<String> = [&written[..2], &written[4..]]
        .concat()
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(ids(&batch), expected);
    assert_eq!(spool.dropped_records(), 1);
}

#[tokio::test]
async fn a_segment_deleted_by_hand_does_not_keep_the_spool_from_making_room() {
    let dir = tempfile::tempdir().unwrap();
    let size = frame_len(&record(0));
    // Two records per segment, three segments' worth of room.
    let spool = open(dir.path(), 6 * size, 2 * size);
    for n in 0..6 {
        spool.append(&record(n)).await.unwrap();
    }
    // The oldest segment, the next to be dropped, goes behind the spool's back.
    std::fs::remove_file(&segment_files(dir.path())[0]).unwrap();
    let later: Vec<AuditRecord> = (6..10).map(record).collect();
    for r in &later {
        spool.append(r).await.unwrap();
    }
    assert!(spool.depth_bytes() <= 6 * size);
    let read = ids(&read_all(&spool));
    assert!(later.iter().all(|r| read.contains(&r.id)), "{read:?}");
}

#[tokio::test]
async fn acknowledged_records_are_not_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let size = frame_len(&record(0));
    let spool = open(dir.path(), 4 * size, 2 * size);
    for n in 0..4 {
        spool.append(&record(n)).await.unwrap();
    }
    let batch = read_all(&spool);
    spool.acknowledge(batch.next).unwrap();
    for n in 4..8 {
        spool.append(&record(n)).await.unwrap();
    }
    assert_eq!(spool.dropped_records(), 0);
}

#[tokio::test]
async fn bound_edges_one_below_at_and_one_above() {
    let size = frame_len(&record(0));
    // At the bound: four records fill it exactly, nothing dropped.
    for (max_bytes, dropped) in [(4 * size - 1, 1), (4 * size, 0), (4 * size + 1, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path(), max_bytes, size);
        for n in 0..4 {
            spool.append(&record(n)).await.unwrap();
        }
        assert_eq!(spool.dropped_records(), dropped, "max_bytes {max_bytes}");
        assert!(spool.depth_bytes() <= max_bytes);
    }
}

#[tokio::test]
async fn a_record_larger_than_the_bound_is_refused() {
    let size = frame_len(&record(0));
    for (max_bytes, fits) in [(size - 1, false), (size, true), (size + 1, true)] {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path(), max_bytes, max_bytes);
        let result = spool.append(&record(0)).await;
        assert_eq!(result.is_ok(), fits, "max_bytes {max_bytes}");
        if !fits {
            assert!(matches!(result, Err(Error::SpoolTooSmall { .. })));
        }
    }
}

#[test]
fn record_size_limit_edges() {
    let mut r = record(0);
    r.image.clear();
    let base = r.encoded_len();
    // Grow the image until the record is exactly at the limit (the length prefix of
    // the field grows with it, so search).
    let mut len = MAX_RECORD_BYTES - base - 4;
    loop {
        r.image = "a".repeat(len);
        if r.encoded_len() >= MAX_RECORD_BYTES {
            break;
        }
        len += 1;
    }
    assert_eq!(r.encoded_len(), MAX_RECORD_BYTES);
    assert!(frame::encode(&r).is_ok());
    r.image.pop();
    assert!(frame::encode(&r).is_ok());
    r.image.push_str("aa");
    assert!(matches!(
        frame::encode(&r),
        Err(Error::RecordTooLarge { .. })
    ));
}

#[test]
fn frame_parser_rejects_what_it_cannot_trust() {
    let good = frame::encode(&record(0)).unwrap();
    assert_eq!(frame::parse(&good, usize::MAX, usize::MAX).records.len(), 1);
    assert!(matches!(
        frame::next(&good[..3]),
        Err(frame::FrameError::Truncated { .. })
    ));
    let mut bad_crc = good.clone();
    bad_crc[5] ^= 1;
    assert_eq!(frame::next(&bad_crc), Err(frame::FrameError::Checksum));
    let mut huge = good.clone();
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        frame::next(&huge),
        Err(frame::FrameError::TooLarge { .. })
    ));
    let limit = (MAX_RECORD_BYTES as u32).to_le_bytes();
    let mut at_limit = good.clone();
    at_limit[..4].copy_from_slice(&limit);
    assert!(matches!(
        frame::next(&at_limit),
        Err(frame::FrameError::Truncated { .. })
    ));
    // Zeros read as a frame of length 0 with the CRC-32 of nothing, which is 0.
    assert_eq!(frame::next(&[0; 16]), Err(frame::FrameError::Empty));
    assert!(frame::parse(&[0; 16], usize::MAX, usize::MAX)
        .records
        .is_empty());
    // A record needs its id.
    let nameless = frame::encode(&AuditRecord::default()).unwrap_or_default();
    let mut no_id = record(0);
    no_id.id.clear();
    for data in [nameless, frame::encode(&no_id).unwrap()] {
        let parsed = frame::parse(&data, usize::MAX, usize::MAX);
        assert!(parsed.records.is_empty());
    }
}

#[tokio::test]
async fn records_after_damage_in_the_last_segment_are_kept_and_the_loss_counted() {
    // Records 0-5 in one segment; then record 2's frame is damaged, and a stretch of
    // zeros (blocks a file system never wrote) follows record 3. Records 0, 1, 3, 4 and 5
    // are read after reopening; the damaged frame and the zeros count as lost.
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<AuditRecord> = (0..6).map(record).collect();
    {
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        for r in &written {
            spool.append(r).await.unwrap();
        }
    }
    let segment = segment_path(dir.path(), 1);
    let data = fs::read(&segment).unwrap();
    let size = frame_len(&written[0]) as usize;
    let mut damaged = data[..2 * size].to_vec();
    let mut third = data[2 * size..3 * size].to_vec();
    third[size / 2] ^= 0xff;
    damaged.extend(third);
    damaged.extend(&data[3 * size..4 * size]);
    damaged.extend([0u8; 64]);
    damaged.extend(&data[4 * size..]);
    // And a torn frame at the end, which is cut off.
    damaged.extend(&data[..size / 2]);
    fs::write(&segment, &damaged).unwrap();

    let expected =
        |from: &[usize]| -> Vec<String> { from.iter().map(|&i| written[i].id.clone()).collect() };
    {
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        assert_eq!(ids(&read_all(&spool)), expected(&[0, 1, 3, 4, 5]));
        assert_eq!(spool.dropped_records(), 2);
        // The damage stays where it is, so every offset names the same bytes.
        assert_eq!(
            fs::metadata(&segment).unwrap().len(),
            (damaged.len() - size / 2) as u64
        );
    }
    // With the cursor past the damage (records 0-3 shipped), the records after it are
    // read from where the cursor says, and the damage shipped before is no loss.
    write_ack(
        dir.path(),
        Position {
            segment: 1,
            offset: (4 * size) as u64,
        },
    )
    .unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 20);
    assert_eq!(ids(&read_all(&spool)), expected(&[4, 5]));
    assert_eq!(spool.dropped_records(), 1, "the zeros after the cursor");
}

#[test]
fn the_cursor_file_round_trips_and_a_corrupt_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let position = Position {
        segment: 7,
        offset: 1234,
    };
    write_ack(dir.path(), position).unwrap();
    assert_eq!(read_ack(dir.path()), Some(position));
    let mut data = fs::read(dir.path().join(ACK_FILE)).unwrap();
    data[0] ^= 1;
    fs::write(dir.path().join(ACK_FILE), data).unwrap();
    assert_eq!(read_ack(dir.path()), None);
}

#[tokio::test]
async fn a_cursor_past_every_segment_keeps_new_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), 1 << 20, 1 << 20);
        spool.append(&record(0)).await.unwrap();
        let batch = read_all(&spool);
        spool.acknowledge(batch.next).unwrap();
        spool.append(&record(1)).await.unwrap();
    }
    // Reopen twice without acknowledging: the unacknowledged record stays.
    drop(open(dir.path(), 1 << 20, 1 << 20));
    let spool = open(dir.path(), 1 << 20, 1 << 20);
    assert_eq!(read_all(&spool).records.len(), 1);
}

#[tokio::test]
async fn reads_stop_at_the_byte_budget_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20, 1 << 20);
    for n in 0..10 {
        spool.append(&record(n)).await.unwrap();
    }
    let size = frame_len(&record(0)) as usize;
    let first = spool.read(spool.cursor(), usize::MAX, 3 * size).unwrap();
    assert_eq!(first.records.len(), 3);
    let second = spool.read(first.next, usize::MAX, usize::MAX).unwrap();
    assert_eq!(second.records.len(), 7);
}

#[tokio::test]
async fn a_drop_is_reported_to_journald_with_its_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("journal.socket");
    let journal = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    journal
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let size = frame_len(&record(0));
    let spool = Spool::open(SpoolConfig {
        dir: dir.path().join("spool"),
        max_bytes: 2 * size,
        segment_bytes: size,
        journal_socket: Some(socket),
    })
    .unwrap();
    for n in 0..3 {
        spool.append(&record(n)).await.unwrap();
    }
    assert_eq!(spool.dropped_records(), 1);
    let mut buf = vec![0; 4096];
    let n = journal.recv(&mut buf).unwrap();
    let entry = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        entry.contains(&format!("MESSAGE_ID={MESSAGE_ID_SPOOL_DROPPED}\n")),
        "{entry}"
    );
    assert!(entry.contains("CRIGATE_SPOOL_DROPPED=1\n"), "{entry}");
    assert!(include_str!("../../../systemd/crigate.catalog")
        .contains(&format!("-- {MESSAGE_ID_SPOOL_DROPPED}\n")));
}

/// Two spools on one directory would interleave their frames and cut each other's
/// segments: while one has it open, another open is refused, naming the directory; once
/// it is dropped, the directory opens again with what it held.
#[tokio::test]
async fn a_spool_in_use_is_not_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), 1 << 20, 64 << 10);
    first.append(&record(1)).await.unwrap();
    let refused = Spool::open(SpoolConfig {
        dir: dir.path().to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 64 << 10,
        journal_socket: None,
    });
    match refused {
        Err(error @ Error::InUse { .. }) => {
            assert!(error
                .to_string()
                .contains(&dir.path().display().to_string()))
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a spool in use was opened again"),
    }
    drop(first);
    let reopened = open(dir.path(), 1 << 20, 64 << 10);
    assert_eq!(read_all(&reopened).records.len(), 1);
}
