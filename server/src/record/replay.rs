//! Reading a recording back and re-running it with no network.
//!
//! [`read`] gathers the segments of a recording in order. [`replay`] creates the same
//! game with the same seed and options, and feeds a [`Room`] exactly what the recorded
//! room saw, in the same order: joins, leaves and game messages between ticks, and each
//! tick's applied inputs. The re-run room records itself into memory, so its world hash
//! per tick comes from the very code that made the recorded one; the first tick whose
//! hash differs is where the game stopped being deterministic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tickcast_shared::DisconnectReason;

use super::format::{decode_segment, FormatError, Header, Record, Tail};
use super::writer::segment_path;
use super::{MemorySink, Recorder};
use crate::game::{Game, GameOptions, Games, PlayerId, UnknownGame};
use crate::room::{Arrival, InputInbox, PlayerOutlet, PlayerSnapshot, Room};

/// A recording as read from disk.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The header of segment 0.
    pub header: Header,
    /// Every record of every segment, in order.
    pub records: Vec<Record>,
    /// Segment files read.
    pub segments: u32,
    /// The last segment's torn final frame (file and byte offset), if a crash left one.
    pub torn: Option<(PathBuf, usize)>,
}

/// A recording that cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A segment is not a readable recording.
    #[error("{path}: {source}")]
    Format {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        source: FormatError,
    },
    /// Segment 0 is gone: a replay starts from the room's creation.
    #[error("{0}: segment 0 is missing (rotated away?); a replay needs the recording from the room's first tick")]
    NoStart(PathBuf),
    /// The segments do not follow each other, or the records are out of order.
    #[error("inconsistent recording: {0}")]
    Inconsistent(String),
    /// The recorded game is not one this replayer hosts.
    #[error(transparent)]
    UnknownGame(#[from] UnknownGame),
}

/// Reads segment 0 at `path` and every later segment that follows it.
///
/// # Errors
/// [`ReplayError`] when segment 0 is missing or a segment is unreadable, damaged, or
/// not the next one.
pub fn read(path: &Path) -> Result<Recording, ReplayError> {
    let mut recording: Option<Recording> = None;
    for n in 0u32.. {
        let file = segment_path(path, n);
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if n == 0 {
                    return Err(ReplayError::NoStart(file));
                }
                break;
            }
            Err(source) => return Err(ReplayError::Io { path: file, source }),
        };
        let (header, records, tail) =
            decode_segment(&bytes).map_err(|source| ReplayError::Format {
                path: file.clone(),
                source,
            })?;
        if header.segment != n {
            return Err(ReplayError::Inconsistent(format!(
                "{} says it is segment {}",
                file.display(),
                header.segment
            )));
        }
        let rec = recording.get_or_insert_with(|| Recording {
            header: header.clone(),
            records: Vec::new(),
            segments: 0,
            torn: None,
        });
        let last_tick = rec.records.iter().rev().find_map(|r| match r {
            Record::Tick { tick, .. } => Some(*tick),
            _ => None,
        });
        if header.room != rec.header.room || header.first_tick != last_tick.unwrap_or(0) {
            return Err(ReplayError::Inconsistent(format!(
                "{} (room {:?} from tick {}) does not follow room {:?} at tick {}",
                file.display(),
                header.room,
                header.first_tick,
                rec.header.room,
                last_tick.unwrap_or(0)
            )));
        }
        if let Some((torn, _)) = &rec.torn {
            return Err(ReplayError::Inconsistent(format!(
                "{} is torn but {} follows it",
                torn.display(),
                file.display()
            )));
        }
        rec.records.extend(records);
        rec.segments += 1;
        if let Tail::Torn(offset) = tail {
            rec.torn = Some((file, offset));
        }
    }
    recording.ok_or_else(|| ReplayError::NoStart(path.to_path_buf()))
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every recorded tick was reproduced exactly.
    Ok,
    /// Tick `tick` is the first that did not come out the same.
    Diverged {
        /// The first tick that differs.
        tick: u64,
        /// What differs.
        what: String,
    },
    /// The recording lost records after tick `after`: verified up to there.
    Incomplete {
        /// The last tick before the gap.
        after: u64,
        /// Records lost.
        dropped: u64,
    },
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Ticks re-run and matched.
    pub ticks: u64,
    /// Every player that joined, with its name, in order.
    pub players: Vec<(PlayerId, String)>,
    /// Inputs applied.
    pub inputs: u64,
    /// Game messages handed to the game.
    pub messages: u64,
    /// OK, or where it stopped.
    pub verdict: Verdict,
}

/// A player of the replayed room: there is no one to send anything to.
#[derive(Debug)]
struct Nowhere;

impl PlayerOutlet for Nowhere {
    fn offer(&self, _: PlayerSnapshot) {}
    fn event(&self, _: Bytes) {}
    fn disconnect(&self, _: DisconnectReason) {}
}

/// Re-runs `recording` with a game from `games` and checks every tick.
///
/// # Errors
/// [`ReplayError::UnknownGame`] when `games` lacks the recorded game;
/// [`ReplayError::Inconsistent`] when the records are not in tick order.
pub fn replay(recording: &Recording, games: &Games) -> Result<Outcome, ReplayError> {
    let mut replayer = Replayer::new(Arc::new(recording.clone()), games)?;
    while replayer.step()? {}
    Ok(replayer.outcome)
}

/// A replay run one tick at a time: [`replay`] runs it to the end, a replay served to
/// viewers ([`super::serve`]) one tick per tick of its room.
pub struct Replayer {
    recording: Arc<Recording>,
    /// The next record to run.
    next: usize,
    room: Room<Box<dyn Game>, Nowhere>,
    /// What the re-run room records: its hashes.
    sink: MemorySink,
    inboxes: BTreeMap<PlayerId, Arc<InputInbox>>,
    outcome: Outcome,
    ended: bool,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("room", &self.recording.header.room)
            .field("next", &self.next)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A fresh game of the recorded kind, seed and options, before its first tick.
    ///
    /// # Errors
    /// [`ReplayError::UnknownGame`] when `games` lacks the recorded game.
    pub fn new(recording: Arc<Recording>, games: &Games) -> Result<Self, ReplayError> {
        let h = &recording.header;
        let game = games.create(
            &h.game,
            &GameOptions {
                npcs: h.npcs,
                seed: h.seed,
            },
        )?;
        let sink = MemorySink::default();
        // Seats are not checked again: every recorded join was admitted.
        let room = Room::new(game, h.tick_rate, usize::MAX)
            .named(&h.game)
            .recording(Recorder::new(sink.clone()));
        Ok(Self {
            recording,
            next: 0,
            room,
            sink,
            inboxes: BTreeMap::new(),
            outcome: Outcome {
                ticks: 0,
                players: Vec::new(),
                inputs: 0,
                messages: 0,
                verdict: Verdict::Ok,
            },
            ended: false,
        })
    }

    /// What the replay found so far.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The replayed game, as of the last tick run.
    pub fn game(&self) -> &dyn Game {
        &**self.room.game()
    }

    /// The recording being replayed.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    fn stop(&mut self, verdict: Verdict) -> Result<bool, ReplayError> {
        self.outcome.verdict = verdict;
        self.ended = true;
        Ok(false)
    }

    /// Runs the records up to and including the next tick. Returns whether a tick was
    /// run and matched; `false` once the recording ends, diverges or has a gap (see
    /// [`Replayer::outcome`]).
    ///
    /// # Errors
    /// [`ReplayError::Inconsistent`] when the records are not in tick order.
    pub fn step(&mut self) -> Result<bool, ReplayError> {
        if self.ended {
            return Ok(false);
        }
        let recording = Arc::clone(&self.recording);
        while let Some(record) = recording.records.get(self.next) {
            self.next += 1;
            let now = self.room.current_tick();
            let at = |tick: u64| {
                if tick == now {
                    Ok(())
                } else {
                    Err(ReplayError::Inconsistent(format!(
                        "a record of tick {tick} after tick {now}"
                    )))
                }
            };
            let diverged = |what: String| Verdict::Diverged {
                tick: now + 1,
                what,
            };
            match record {
                Record::Join {
                    tick,
                    player,
                    entity,
                    name,
                } => {
                    at(*tick)?;
                    let arrival = Arrival {
                        name: name.clone(),
                        identity: None,
                    };
                    let joined = match self.room.join_as(Nowhere, [0; 16], arrival) {
                        Ok(joined) => joined,
                        Err(e) => {
                            return self
                                .stop(diverged(format!("player {player} could not join: {e}")))
                        }
                    };
                    if (joined.player_id, joined.welcome.entity_id) != (*player, *entity) {
                        return self.stop(diverged(format!(
                            "a join was player {player} with entity {entity}, replayed as player {} with entity {}",
                            joined.player_id, joined.welcome.entity_id
                        )));
                    }
                    self.inboxes.insert(*player, joined.inbox);
                    self.outcome.players.push((*player, name.clone()));
                }
                Record::Leave { tick, player } => {
                    at(*tick)?;
                    let left = self
                        .room
                        .generation_of(*player)
                        .is_some_and(|g| self.room.leave(*player, g));
                    if !left {
                        return self.stop(diverged(format!(
                            "player {player} left but was not in the room"
                        )));
                    }
                    self.inboxes.remove(player);
                }
                Record::Message {
                    tick,
                    player,
                    payload,
                } => {
                    at(*tick)?;
                    // A refusal is replayed as it happened: the game decides again.
                    let _ = self.room.message(*player, payload);
                    self.outcome.messages += 1;
                }
                Record::Tick { tick, inputs, hash } => {
                    at(tick.saturating_sub(1))?;
                    for (player, input) in inputs {
                        let Some(inbox) = self.inboxes.get(player) else {
                            return Err(ReplayError::Inconsistent(format!(
                                "tick {tick} applies an input of player {player}, who is not in the room"
                            )));
                        };
                        inbox.put(*input);
                    }
                    self.sink.take();
                    self.room.advance();
                    self.outcome.inputs += inputs.len() as u64;
                    let mine = self.sink.take();
                    let Some(Record::Tick { hash: got, .. }) = mine.last() else {
                        return Err(ReplayError::Inconsistent(
                            "the replayed room did not record its tick".into(),
                        ));
                    };
                    if got != hash {
                        let entities = self.room.world_entities();
                        return self.stop(Verdict::Diverged {
                            tick: *tick,
                            what: format!(
                                "world hash {:016x} recorded, {:016x} replayed ({entities} entities in the replayed world)",
                                u64::from_le_bytes(*hash),
                                u64::from_le_bytes(*got),
                            ),
                        });
                    }
                    self.outcome.ticks = *tick;
                    return Ok(true);
                }
                Record::Incomplete { dropped } => {
                    return self.stop(Verdict::Incomplete {
                        after: now,
                        dropped: *dropped,
                    });
                }
            }
        }
        self.ended = true;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::{Arena, ArenaConfig};
    use crate::record::format::FORMAT_VERSION;
    use crate::record::writer::{Limits, SegmentWriter};
    use glam::Vec2;
    use tickcast_shared::Input;

    fn header(room: &str) -> Header {
        Header {
            version: FORMAT_VERSION,
            room: room.into(),
            game: "arena".into(),
            seed: 42,
            npcs: 5,
            tick_rate: 30,
            max_players: 8,
            view_radius: 0.0,
            segment: 0,
            first_tick: 0,
        }
    }

    /// 40 ticks of an Arena with two players, a leave, a rejoin and catch-up ticks,
    /// recorded in memory.
    fn session() -> Vec<Record> {
        let sink = MemorySink::default();
        let game = Arena::new(ArenaConfig {
            npcs: 5,
            seed: 42,
            ..ArenaConfig::default()
        });
        let mut room: Room<Arena, Nowhere> =
            Room::new(game, 30, 8).recording(Recorder::new(sink.clone()));
        let arrive = |name: &str| Arrival {
            name: name.into(),
            identity: None,
        };
        let a = room.join_as(Nowhere, [1; 16], arrive("a")).unwrap();
        let b = room.join_as(Nowhere, [2; 16], arrive("b")).unwrap();
        for n in 1..=40u32 {
            let angle = n as f32 * 0.3;
            a.inbox.put(Input {
                seq: n,
                movement: Vec2::new(angle.cos(), angle.sin()),
                buttons: 0,
                payload: Default::default(),
            });
            if n == 10 {
                room.leave(b.player_id, b.generation);
                let c = room.join_as(Nowhere, [3; 16], arrive("c")).unwrap();
                c.inbox.put(Input {
                    seq: 1,
                    movement: Vec2::Y,
                    buttons: 0,
                    payload: Default::default(),
                });
            }
            if n % 7 == 0 {
                room.advance();
            } else {
                room.tick();
            }
        }
        sink.take()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tickcast-replay-unit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn write(dir: &Path, records: &[Record], limits: Limits) -> PathBuf {
        let mut w = SegmentWriter::create(dir, header("u"), limits).unwrap();
        for r in records {
            w.append(r).unwrap();
        }
        w.flush().unwrap();
        w.path().to_path_buf()
    }

    #[test]
    fn a_rotated_recording_replays_and_a_torn_tail_loses_only_its_last_record() {
        let dir = scratch("rotated");
        let records = session();
        let limits = Limits {
            max_bytes: 300,
            keep: 1000,
        };
        let path = write(&dir, &records, limits);
        let whole = read(&path).unwrap();
        assert!(whole.segments >= 3, "{} segments", whole.segments);
        assert_eq!(whole.records, records);
        let outcome = replay(&whole, &Games::builtin()).unwrap();
        assert_eq!(outcome.verdict, Verdict::Ok);
        assert_eq!((outcome.ticks, outcome.inputs), (40, 41));
        let names: Vec<_> = outcome.players.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);

        // A crash mid-write: the last segment loses half of its last frame (tick 40).
        let last = segment_path(&path, whole.segments - 1);
        let bytes = std::fs::read(&last).unwrap();
        std::fs::write(&last, &bytes[..bytes.len() - 5]).unwrap();
        let torn = read(&path).unwrap();
        assert!(matches!(&torn.torn, Some((file, _)) if *file == last));
        assert_eq!(torn.records, records[..records.len() - 1]);
        let outcome = replay(&torn, &Games::builtin()).unwrap();
        assert_eq!((outcome.ticks, outcome.verdict), (39, Verdict::Ok));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_recording_whose_start_was_rotated_away_is_refused() {
        let dir = scratch("start");
        let path = write(
            &dir,
            &session(),
            Limits {
                max_bytes: 300,
                keep: 2,
            },
        );
        assert!(matches!(read(&path), Err(ReplayError::NoStart(p)) if p == path));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gap_in_the_recording_stops_the_replay_there() {
        let mut records = session();
        let at = records
            .iter()
            .position(|r| matches!(r, Record::Tick { tick: 20, .. }))
            .unwrap();
        records.insert(at + 1, Record::Incomplete { dropped: 3 });
        let recording = Recording {
            header: header("u"),
            records,
            segments: 1,
            torn: None,
        };
        let outcome = replay(&recording, &Games::builtin()).unwrap();
        assert_eq!(
            (outcome.ticks, outcome.verdict),
            (
                20,
                Verdict::Incomplete {
                    after: 20,
                    dropped: 3
                }
            )
        );
    }
}
