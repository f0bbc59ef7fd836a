//! How a bot steers: a smooth random walk.
//!
//! Each bot of [`crate::swarm`] asks its [`Wander`] for a movement direction before
//! every input. The turn rate itself drifts at random, so paths curve and wind instead
//! of jittering in place: the server sees avatars that move like players, spread over
//! the world, rather than all standing still or all walking in a straight line.

use glam::Vec2;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Largest change of turn rate per step, in radians per step per step.
const TURN_JITTER: f32 = 0.05;
/// Largest turn rate, in radians per step (about 17°).
const MAX_TURN: f32 = 0.3;

/// A random-walk steering state: a heading that turns at a slowly drifting rate.
#[derive(Debug, Clone)]
pub struct Wander {
    heading: f32,
    turn: f32,
    rng: SmallRng,
}

impl Wander {
    /// A walk starting in a random direction; the same seed gives the same walk.
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let heading = rng.random_range(0.0..std::f32::consts::TAU);
        Self {
            heading,
            turn: 0.0,
            rng,
        }
    }

    /// The next movement direction, of unit length.
    pub fn next_direction(&mut self) -> Vec2 {
        self.turn = (self.turn + self.rng.random_range(-TURN_JITTER..=TURN_JITTER))
            .clamp(-MAX_TURN, MAX_TURN);
        self.heading = (self.heading + self.turn).rem_euclid(std::f32::consts::TAU);
        Vec2::from_angle(self.heading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_are_unit_and_change_smoothly() {
        let mut w = Wander::new(42);
        let mut prev = w.next_direction();
        let mut turned = 0.0f32;
        for _ in 0..1000 {
            let d = w.next_direction();
            assert!((d.length() - 1.0).abs() < 1e-5, "{d}");
            let angle = prev.angle_to(d).abs();
            assert!(angle <= MAX_TURN + 1e-4, "turned {angle} rad in one step");
            turned += angle;
            prev = d;
        }
        assert!(turned > 1.0, "the walk never turns");
    }

    #[test]
    fn same_seed_same_walk() {
        let (mut a, mut b) = (Wander::new(7), Wander::new(7));
        for _ in 0..10 {
            assert_eq!(a.next_direction(), b.next_direction());
        }
    }
}
