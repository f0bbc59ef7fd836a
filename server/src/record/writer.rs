//! Recording files: segments with a size cap and rotation, and the task that writes them.
//!
//! A room `ID` records to `DIR/room-ID` (segment 0), then `room-ID.1`, `room-ID.2`, ...
//! each time a segment would pass `--record-max-bytes`. Only the newest `--record-keep`
//! segments are kept. Every segment starts with a header naming the tick it starts at,
//! but a replay re-runs the game from its start, so it needs segment 0: a recording
//! meant for replay needs a cap and a count that hold the whole session.
//!
//! The room never waits for the disk: [`ChannelSink`] offers each record to a bounded
//! channel, and the writer task ([`run`]) writes what it receives in batches, off the
//! async threads, and flushes once a second.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::format::{encode_frame, segment_start, Header, Record};
use super::RecordSink;

/// Records the channel to the writer holds before the room starts dropping them: at
/// 30 ticks per second, minutes of quiet ticks, or seconds of a busy room.
pub const CHANNEL_RECORDS: usize = 8192;

/// Size cap and rotation of one room's recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A segment rotates before it would grow past this many bytes (a segment holds at
    /// least one record whatever the cap).
    pub max_bytes: u64,
    /// Segments kept; older ones are deleted (at least 1).
    pub keep: usize,
}

/// A file name part for a room id: letters, digits, `-` and `_` as they are, any other
/// byte as `%XX`, so that no room name can reach outside `DIR`.
pub fn file_stem(room: &str) -> String {
    let mut out = String::with_capacity(room.len() + 5);
    out.push_str("room-");
    for b in room.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path of segment `n` of the recording at `base`.
pub fn segment_path(base: &Path, n: u32) -> PathBuf {
    if n == 0 {
        base.to_path_buf()
    } else {
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

/// True when `dir` holds `name` or `name.N` for some number N.
fn has_segments(dir: &Path, name: &str) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.file_name();
        let Some(file) = file.to_str() else { continue };
        let Some(rest) = file.strip_prefix(name) else {
            continue;
        };
        let numbered = rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if rest.is_empty() || numbered {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes one room's recording, segment by segment.
#[derive(Debug)]
pub struct SegmentWriter {
    base: PathBuf,
    header: Header,
    limits: Limits,
    file: BufWriter<File>,
    written: u64,
    /// Bytes of the current segment's start (magic and header).
    start_len: u64,
    /// The newest tick a record has named, where the next segment begins.
    tick: u64,
    frame: Vec<u8>,
}

impl SegmentWriter {
    /// Starts a recording of `header.room` in `dir`: `room-ID`, or `room-ID-2`, `-3`...
    /// when an earlier room of that name left a recording there.
    ///
    /// # Errors
    /// When `dir` cannot be created or no file can be.
    pub fn create(dir: &Path, mut header: Header, limits: Limits) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let stem = file_stem(&header.room);
        header.segment = 0;
        header.first_tick = 0;
        let mut n = 1u32;
        loop {
            let name = if n == 1 {
                stem.clone()
            } else {
                format!("{stem}-{n}")
            };
            let base = dir.join(&name);
            // Segment 0 may be gone (rotated away) while later ones remain: the name is
            // taken as long as any segment of it is there.
            let opened = if has_segments(dir, &name)? {
                Err(io::ErrorKind::AlreadyExists.into())
            } else {
                OpenOptions::new().write(true).create_new(true).open(&base)
            };
            match opened {
                Ok(file) => {
                    let mut writer = Self {
                        base,
                        header,
                        limits,
                        file: BufWriter::new(file),
                        written: 0,
                        start_len: 0,
                        tick: 0,
                        frame: Vec::new(),
                    };
                    writer.start_segment()?;
                    return Ok(writer);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where segment 0 is: the path to give `tickcast-replay`.
    pub fn path(&self) -> &Path {
        &self.base
    }

    fn start_segment(&mut self) -> io::Result<()> {
        let start = segment_start(&self.header).map_err(io::Error::other)?;
        self.file.write_all(&start)?;
        // At once, so that a segment on disk is a readable recording from its start.
        self.file.flush()?;
        self.written = start.len() as u64;
        self.start_len = self.written;
        Ok(())
    }

    /// Appends `record`, rotating first when it would pass the size cap.
    ///
    /// # Errors
    /// When the file cannot be written, created or rotated.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        self.frame.clear();
        encode_frame(record, &mut self.frame).map_err(io::Error::other)?;
        let len = self.frame.len() as u64;
        if self.written + len > self.limits.max_bytes && self.written > self.start_len {
            self.rotate()?;
        }
        self.file.write_all(&self.frame)?;
        self.written += len;
        if let Record::Tick { tick, .. } = record {
            self.tick = *tick;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let next = self.header.segment + 1;
        self.header.segment = next;
        self.header.first_tick = self.tick;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(segment_path(&self.base, next))?;
        self.file = BufWriter::new(file);
        self.start_segment()?;
        let keep = u32::try_from(self.limits.keep.max(1)).unwrap_or(u32::MAX);
        if let Some(old) = next.checked_sub(keep) {
            match std::fs::remove_file(segment_path(&self.base, old)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Pushes buffered bytes to the file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The room's end of the channel to the writer task. Never waits: a full channel drops
/// the record, and the next record that fits is preceded by a
/// [`Record::Incomplete`] saying how many were lost there.
#[derive(Debug)]
pub struct ChannelSink {
    tx: mpsc::Sender<Record>,
    dropped: u64,
    warned: bool,
}

impl RecordSink for ChannelSink {
    fn record(&mut self, record: Record) {
        if self.dropped > 0 {
            let gap = Record::Incomplete {
                dropped: self.dropped,
            };
            if self.tx.try_send(gap).is_err() {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if self.tx.try_send(record).is_err() {
            if !self.warned {
                warn!("the recording writer fell behind: records dropped, recording incomplete");
                self.warned = true;
            }
            self.dropped += 1;
        }
    }
}

/// A sink for the room and the receiving end for [`run`].
pub fn channel(capacity: usize) -> (ChannelSink, mpsc::Receiver<Record>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        ChannelSink {
            tx,
            dropped: 0,
            warned: false,
        },
        rx,
    )
}

/// How long written records may wait in the file buffer: what a crash can lose.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The writer task: writes what the room sends, in batches on the blocking pool, and
/// flushes the file at most once per [`FLUSH_EVERY`] (and when the room, the sender, is
/// gone, which ends it). A write error ends the recording with a warning; the room is
/// not affected.
pub async fn run(mut writer: SegmentWriter, mut rx: mpsc::Receiver<Record>) {
    let mut batch = Vec::with_capacity(256);
    let mut flush_at = Instant::now() + FLUSH_EVERY;
    let mut open = true;
    while open {
        // `recv_many` is cancel-safe: a timeout loses nothing.
        // 0 received (not a timeout) means the room is gone.
        let received = tokio::time::timeout_at(flush_at, rx.recv_many(&mut batch, 256)).await;
        open = received != Ok(0);
        let flush = !open || Instant::now() >= flush_at;
        if batch.is_empty() && !flush {
            continue;
        }
        let records = std::mem::take(&mut batch);
        let done = tokio::task::spawn_blocking(move || {
            let mut result = records.iter().try_for_each(|r| writer.append(r));
            if flush && result.is_ok() {
                result = writer.flush();
            }
            (writer, result, records)
        })
        .await;
        match done {
            Ok((w, Ok(()), mut records)) => {
                writer = w;
                records.clear();
                batch = records;
            }
            Ok((w, Err(e), _)) => {
                warn!(path = %w.path().display(), error = %e, "recording stopped: write failed");
                return;
            }
            Err(e) => {
                warn!(error = %e, "recording stopped: the writer panicked");
                return;
            }
        }
        if flush {
            flush_at = Instant::now() + FLUSH_EVERY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::format::{decode_segment, Tail, FORMAT_VERSION};

    fn header() -> Header {
        Header {
            version: FORMAT_VERSION,
            room: "a/../b c".into(),
            game: "arena".into(),
            seed: 1,
            npcs: 0,
            tick_rate: 30,
            max_players: 4,
            view_radius: 0.0,
            segment: 0,
            first_tick: 0,
        }
    }

    fn tick(n: u64) -> Record {
        Record::Tick {
            tick: n,
            inputs: vec![],
            hash: [0; 8],
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tickcast-rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn segments_rotate_at_the_cap_and_only_the_newest_are_kept() {
        let dir = scratch("rotate");
        // A segment start is about 40 bytes, a quiet tick 12: the cap holds 4 ticks.
        let start = segment_start(&header()).unwrap().len() as u64;
        let limits = Limits {
            max_bytes: start + 4 * 12,
            keep: 2,
        };
        let mut w = SegmentWriter::create(&dir, header(), limits).unwrap();
        assert_eq!(w.path(), dir.join("room-a%2F%2E%2E%2Fb%20c"));
        for n in 1..=10 {
            w.append(&tick(n)).unwrap();
        }
        w.flush().unwrap();
        let base = w.path().to_path_buf();
        // Ticks 1-4 in segment 0, 5-8 in 1, 9-10 in 2; keep 2 deletes segment 0.
        assert!(!segment_path(&base, 0).exists());
        let (h1, r1, t1) = decode_segment(&std::fs::read(segment_path(&base, 1)).unwrap()).unwrap();
        let (h2, r2, t2) = decode_segment(&std::fs::read(segment_path(&base, 2)).unwrap()).unwrap();
        assert_eq!((h1.segment, h1.first_tick, t1), (1, 4, Tail::Clean));
        assert_eq!((h2.segment, h2.first_tick, t2), (2, 8, Tail::Clean));
        assert_eq!(r1, (5..=8).map(tick).collect::<Vec<_>>());
        assert_eq!(r2, (9..=10).map(tick).collect::<Vec<_>>());
        assert!(std::fs::metadata(segment_path(&base, 1)).unwrap().len() <= limits.max_bytes);
        // A second room of the same name does not overwrite the first one's recording.
        let again = SegmentWriter::create(&dir, header(), limits).unwrap();
        assert_eq!(again.path(), dir.join("room-a%2F%2E%2E%2Fb%20c-2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_writer_task_flushes_within_a_second_and_writes_everything_before_it_ends() {
        let dir = scratch("task");
        let limits = Limits {
            max_bytes: 1 << 20,
            keep: 1,
        };
        let w = SegmentWriter::create(&dir, header(), limits).unwrap();
        let path = w.path().to_path_buf();
        let (mut sink, rx) = channel(16);
        let task = tokio::spawn(run(w, rx));
        for n in 1..=3 {
            sink.record(tick(n));
        }
        // The room is still there: the records reach the file by the periodic flush
        // (a few dozen bytes would otherwise sit in the buffer).
        let deadline = Instant::now() + 5 * FLUSH_EVERY;
        loop {
            let (_, records, _) = decode_segment(&std::fs::read(&path).unwrap()).unwrap();
            if records.len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not flushed: {} records",
                records.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sink.record(tick(4));
        drop(sink);
        task.await.unwrap();
        let (_, records, tail) = decode_segment(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(records, (1..=4).map(tick).collect::<Vec<_>>());
        assert_eq!(tail, Tail::Clean);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_channel_drops_records_and_marks_the_gap() {
        let (mut sink, mut rx) = channel(2);
        for n in 1..=5 {
            sink.record(tick(n));
        }
        // 1 and 2 fit; 3, 4, 5 are dropped.
        assert_eq!(rx.try_recv().unwrap(), tick(1));
        assert_eq!(rx.try_recv().unwrap(), tick(2));
        sink.record(tick(6));
        assert_eq!(rx.try_recv().unwrap(), Record::Incomplete { dropped: 3 });
        assert_eq!(rx.try_recv().unwrap(), tick(6));
        sink.record(tick(7));
        assert_eq!(rx.try_recv().unwrap(), tick(7));
    }
}
