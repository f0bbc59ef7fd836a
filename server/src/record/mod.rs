//! Recording a room and replaying it (`--record DIR`, `tickcast-replay`).
//!
//! A room with a [`Recorder`] reports everything that decides its game (joins, leaves,
//! game messages, every applied input, a world hash per tick) to a [`RecordSink`]. The
//! server's sink ([`writer::ChannelSink`]) hands records to a writer task through a
//! bounded channel and never waits: when the writer falls behind, records are counted
//! as dropped and the recording is marked incomplete, and the game goes on.
//!
//! - [`format`]: the bytes of a recording, I/O-free.
//! - [`writer`]: segment files with a size cap and rotation, and the writer task.
//! - [`replay`]: reads a recording and re-runs it in a room with no network, checking
//!   every tick's hash.
//! - [`serve`]: a recording as a game, for a read-only room that viewers watch.

pub mod format;
pub mod replay;
pub mod serve;
pub mod writer;

use std::fmt;

use tickcast_shared::Input;

pub use format::{Header, Record};

use crate::game::PlayerId;

/// Where a recording room sends its records, in the order they happened. Called on the
/// room's tick task: an implementation must not block.
pub trait RecordSink: Send {
    /// Takes one record.
    fn record(&mut self, record: Record);
}

/// Collects records in memory: for tests, and for the replay, which records its own
/// re-run to compare hashes.
#[derive(Debug, Default, Clone)]
pub struct MemorySink(pub std::sync::Arc<std::sync::Mutex<Vec<Record>>>);

impl MemorySink {
    /// Takes the records collected so far.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl RecordSink for MemorySink {
    fn record(&mut self, record: Record) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }
}

/// A room's recording hook: collects the inputs of the tick being run and passes every
/// record to its sink.
pub struct Recorder {
    sink: Box<dyn RecordSink>,
    inputs: Vec<(PlayerId, Input)>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("pending_inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder sending to `sink`.
    pub fn new(sink: impl RecordSink + 'static) -> Self {
        Self {
            sink: Box::new(sink),
            inputs: Vec::new(),
        }
    }

    /// Passes `record` on.
    pub(crate) fn record(&mut self, record: Record) {
        self.sink.record(record);
    }

    /// Notes an input applied in the tick being run.
    pub(crate) fn input(&mut self, player: PlayerId, input: &Input) {
        self.inputs.push((player, *input));
    }

    /// Ends tick `tick`: one record with its inputs and the world's hash.
    pub(crate) fn tick(&mut self, tick: u64, hash: [u8; 8]) {
        let inputs = std::mem::take(&mut self.inputs);
        self.sink.record(Record::Tick { tick, inputs, hash });
    }
}
