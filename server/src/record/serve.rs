//! A recording served as a read-only room (`tickcast-replay --serve ADDR`).
//!
//! [`ReplayGame`] is a [`Game`] whose world is a [`Replayer`]'s: each tick of the room it
//! runs in advances the replay by one recorded tick, so a room created fresh shows at
//! its tick N the recorded world of tick N. The players of that room are viewers: they
//! get a `Welcome` and snapshots like any player, their own entity is not in the world,
//! and their inputs are ignored (game messages are refused, as by a game that takes
//! none). Speed is the room's tick rate: the recorded rate times the speed.

use std::sync::Arc;

use glam::Vec2;
use tickcast_shared::{EntityState, FieldSpec, Input};
use tracing::{info, warn};

use super::replay::{Recording, ReplayError, Replayer, Verdict};
use crate::game::{EntityId, Events, Game, GameOptions, Games, PlayerId};

/// The name the replay is registered under in the [`Games`] of [`games`].
pub const REPLAY_GAME: &str = "replay";

/// The recorded world, one recorded tick per step.
#[derive(Debug)]
pub struct ReplayGame {
    replayer: Replayer,
    ended: bool,
}

impl ReplayGame {
    /// A replay of `recording` from its first tick.
    ///
    /// # Errors
    /// [`ReplayError::UnknownGame`] when `games` lacks the recorded game.
    pub fn new(recording: Arc<Recording>, games: &Games) -> Result<Self, ReplayError> {
        Ok(Self {
            replayer: Replayer::new(recording, games)?,
            ended: false,
        })
    }
}

impl Game for ReplayGame {
    /// Viewers have no entity in the world: an id counted down from the top of the id
    /// range, which recorded games (counting up from 0) never reach.
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        EntityId::MAX - player
    }

    fn despawn_player(&mut self, _entity: EntityId) {}

    /// Read-only: a viewer's input changes nothing.
    fn apply_input(&mut self, _entity: EntityId, _input: &Input) {}

    fn step(&mut self, _dt: f32, _events: &mut Events) {
        if self.ended {
            return;
        }
        match self.replayer.step() {
            Ok(true) => {}
            Ok(false) => {
                self.ended = true;
                let outcome = self.replayer.outcome();
                match &outcome.verdict {
                    Verdict::Ok => {
                        info!(ticks = outcome.ticks, "replay ended; the last world stays")
                    }
                    other => warn!(ticks = outcome.ticks, verdict = ?other, "replay stopped"),
                }
            }
            Err(e) => {
                self.ended = true;
                warn!(error = %e, "replay stopped");
            }
        }
    }

    fn world_size(&self) -> Vec2 {
        self.replayer.game().world_size()
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        self.replayer.game().write_state(out);
    }

    fn pos_quantum(&self) -> f32 {
        self.replayer.game().pos_quantum()
    }

    fn fields(&self) -> Vec<FieldSpec> {
        self.replayer.game().fields()
    }
}

/// A world with nothing in it, for a replay that could not start (never once
/// [`games`] has checked the recording).
#[derive(Debug)]
struct Nothing;

impl Game for Nothing {
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        EntityId::MAX - player
    }
    fn despawn_player(&mut self, _: EntityId) {}
    fn apply_input(&mut self, _: EntityId, _: &Input) {}
    fn step(&mut self, _: f32, _: &mut Events) {}
    fn world_size(&self) -> Vec2 {
        Vec2::ZERO
    }
    fn write_state(&self, _: &mut Vec<EntityState>) {}
}

/// `base` plus [`REPLAY_GAME`]: every room of that game replays `recording` from its
/// first tick, with its game made by `base`.
///
/// # Errors
/// [`ReplayError::UnknownGame`] when `base` lacks the recorded game.
pub fn games(recording: Arc<Recording>, base: Games) -> Result<Games, ReplayError> {
    // Checked once here, so that every room can start.
    ReplayGame::new(Arc::clone(&recording), &base)?;
    let makers = base.clone();
    Ok(
        base.with(REPLAY_GAME, move |_: &GameOptions| -> Box<dyn Game> {
            match ReplayGame::new(Arc::clone(&recording), &makers) {
                Ok(game) => Box::new(game),
                Err(e) => {
                    warn!(error = %e, "replay could not start");
                    Box::new(Nothing)
                }
            }
        }),
    )
}
