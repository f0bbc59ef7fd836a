//! A uniform spatial grid over one tick's entities, for areas of interest.
//!
//! Built once per tick (a counting sort, O(n)) and only when a view radius is set;
//! each player's query then visits the few cells its view circle overlaps instead of
//! every entity. Cells are as wide as the view radius, so a query reads at most 3 x 3
//! cells. Positions are in quanta.

use tickcast_shared::delta::QEntity;

/// Entity indices bucketed by cell.
#[derive(Debug, Clone)]
pub struct Grid {
    min: [i64; 2],
    cell: i64,
    cols: usize,
    rows: usize,
    /// `starts[c]..starts[c + 1]` indexes `items` for cell `c`.
    starts: Vec<u32>,
    /// Entity indices, grouped by cell, ascending within a cell.
    items: Vec<u32>,
}

impl Grid {
    /// Buckets `entities` into cells of side `cell` quanta (at least 1). If the entities
    /// are spread so far apart that the grid would have far more cells than entities,
    /// cells grow, so memory stays O(n) whatever the positions.
    pub fn build(entities: &[QEntity], cell: i64) -> Self {
        let mut min = [i64::MAX; 2];
        let mut max = [i64::MIN; 2];
        for e in entities {
            for a in 0..2 {
                min[a] = min[a].min(i64::from(e.pos[a]));
                max[a] = max[a].max(i64::from(e.pos[a]));
            }
        }
        if entities.is_empty() {
            min = [0; 2];
            max = [0; 2];
        }
        let mut cell = cell.max(1);
        let budget = 4 * entities.len() as i64 + 64;
        let dims = |cell: i64| [(max[0] - min[0]) / cell + 1, (max[1] - min[1]) / cell + 1];
        while dims(cell)[0].saturating_mul(dims(cell)[1]) > budget {
            cell = cell.saturating_mul(2);
        }
        let [cols, rows] = dims(cell).map(|d| d as usize);
        let cell_of = |e: &QEntity| {
            let x = ((i64::from(e.pos[0]) - min[0]) / cell) as usize;
            let y = ((i64::from(e.pos[1]) - min[1]) / cell) as usize;
            y * cols + x
        };
        let mut starts = vec![0u32; cols * rows + 1];
        for e in entities {
            starts[cell_of(e) + 1] += 1;
        }
        for c in 0..cols * rows {
            starts[c + 1] += starts[c];
        }
        let mut fill = starts.clone();
        let mut items = vec![0u32; entities.len()];
        for (i, e) in entities.iter().enumerate() {
            let c = cell_of(e);
            items[fill[c] as usize] = i as u32;
            fill[c] += 1;
        }
        Self {
            min,
            cell,
            cols,
            rows,
            starts,
            items,
        }
    }

    /// Appends to `out` (cleared first) every entity within `radius` quanta of `center`,
    /// sorted by id. `scratch` is a reusable buffer.
    pub fn query(
        &self,
        entities: &[QEntity],
        center: [i32; 2],
        radius: i64,
        scratch: &mut Vec<u32>,
        out: &mut Vec<QEntity>,
    ) {
        out.clear();
        scratch.clear();
        let c = [i64::from(center[0]), i64::from(center[1])];
        let range = |axis: usize, len: usize| {
            let lo = ((c[axis] - radius - self.min[axis]).max(0) / self.cell) as usize;
            let hi = (c[axis] + radius - self.min[axis]).div_euclid(self.cell);
            (
                lo,
                if hi < 0 {
                    None
                } else {
                    Some((hi as usize).min(len - 1))
                },
            )
        };
        let ((x0, x1), (y0, y1)) = (range(0, self.cols), range(1, self.rows));
        let (Some(x1), Some(y1)) = (x1, y1) else {
            return;
        };
        let r2 = radius.saturating_mul(radius);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let cell = y * self.cols + x;
                for &i in &self.items[self.starts[cell] as usize..self.starts[cell + 1] as usize] {
                    let e = &entities[i as usize];
                    let dx = i64::from(e.pos[0]) - c[0];
                    let dy = i64::from(e.pos[1]) - c[1];
                    if dx * dx + dy * dy <= r2 {
                        scratch.push(i);
                    }
                }
            }
        }
        // Entities are sorted by id, so sorted indices give an id-sorted view.
        scratch.sort_unstable();
        out.extend(scratch.iter().map(|&i| entities[i as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    use tickcast_shared::EntityKind;

    fn world(n: u32, spread: i32, seed: u64) -> Vec<QEntity> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|id| QEntity {
                id,
                kind: EntityKind::Npc,
                pos: [
                    rng.random_range(-spread..spread),
                    rng.random_range(-spread..spread),
                ],
                vel: [0, 0],
                fields: Default::default(),
            })
            .collect()
    }

    fn brute(entities: &[QEntity], c: [i32; 2], r: i64) -> Vec<QEntity> {
        entities
            .iter()
            .filter(|e| {
                let (dx, dy) = (
                    i64::from(e.pos[0]) - i64::from(c[0]),
                    i64::from(e.pos[1]) - i64::from(c[1]),
                );
                dx * dx + dy * dy <= r * r
            })
            .copied()
            .collect()
    }

    #[test]
    fn query_equals_an_all_pairs_scan() {
        let mut rng = SmallRng::seed_from_u64(9);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        for (n, spread, r) in [
            (1000, 8000, 4000),
            (500, 8000, 100),
            (50, i32::MAX / 2, 1 << 20),
            (0, 10, 5),
            (1, 10, 0),
        ] {
            let entities = world(n, spread, n as u64);
            let grid = Grid::build(&entities, r);
            assert!(grid.cols * grid.rows <= 4 * n as usize + 64);
            for _ in 0..50 {
                let c = [
                    rng.random_range(-spread..spread),
                    rng.random_range(-spread..spread),
                ];
                grid.query(&entities, c, r, &mut scratch, &mut out);
                assert_eq!(out, brute(&entities, c, r), "n={n} r={r} c={c:?}");
            }
        }
    }
}
