//! The training loop every member runs, and a single process too.
//!
//! Which rows a step trains on does not depend on who holds them: step `t`
//! of epoch `e` takes window `t` of a permutation of all rows drawn from
//! `(seed, e)`, as a shuffling data loader with `drop_last` would. Each
//! member takes the window's rows that lie in its shard, and its loss and
//! gradient are sums divided by the global batch, so the all-reduced sum is
//! exactly the global batch's mean. The loss curve is therefore the same on
//! one process, on two workers, or on the survivors after a restart, up to
//! the order of float additions.

use std::time::Instant;

use super::model::{self, Ad, Mlp, MlpConfig};
use crate::dl::ring::Ring;

/// Rows a member holds: row-major `f32` values, by blocks of global rows.
pub struct Shard {
    /// Per block: its first global row, X values (rows × inputs), y values (rows × outputs).
    pub blocks: Vec<(usize, Vec<f32>, Vec<f32>)>,
    /// Features per row.
    pub inputs: usize,
    /// Targets per row.
    pub outputs: usize,
}

impl Shard {
    fn rows_of(&self, b: usize) -> usize {
        self.blocks[b].1.len() / self.inputs.max(1)
    }

    /// The block and offset holding global row `r`, if this shard has it.
    fn find(&self, r: usize) -> Option<(usize, usize)> {
        let b = self.blocks.partition_point(|blk| blk.0 <= r).checked_sub(1)?;
        let off = r - self.blocks[b].0;
        (off < self.rows_of(b)).then_some((b, off))
    }
}

/// What to train, the same for every member.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Rows of the whole data set.
    pub total_rows: usize,
    /// Rows per step, over all members.
    pub batch_size: usize,
    /// Steps in all (the loop runs from `start_step`).
    pub steps: usize,
    /// SGD's learning rate.
    pub learning_rate: f64,
    /// Seeds the row order.
    pub seed: u64,
}

/// The permutation of `0..n` of one epoch (SplitMix64-driven Fisher–Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut state = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Time spent, for the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// Forward, backward and the update.
    pub compute_s: f64,
    /// Waiting in the ring all-reduce.
    pub all_reduce_s: f64,
    /// Rows this member trained on.
    pub rows: usize,
}

/// Trains `model` from step `start` to `plan.steps` on `shard`, summing
/// gradients over `ring` (none: a single process). Calls `each_step(step,
/// loss, model)` after every update (the loss of the batch before it).
pub fn train(
    mut model: Mlp<Ad>,
    config: &MlpConfig,
    shard: &Shard,
    plan: &Plan,
    start: usize,
    mut ring: Option<&mut Ring>,
    mut each_step: impl FnMut(usize, f32, &Mlp<Ad>) -> Result<(), String>,
) -> Result<(Mlp<Ad>, Timing), String> {
    let per_epoch = plan.total_rows / plan.batch_size;
    if per_epoch == 0 {
        return Err(format!(
            "batch_size {} is larger than the {} rows",
            plan.batch_size, plan.total_rows
        ));
    }
    let mut optim = model::sgd();
    let mut order: Option<(usize, Vec<u32>)> = None;
    let denominator = (plan.batch_size * config.outputs) as f32;
    let (mut x, mut y, mut flat) = (Vec::new(), Vec::new(), Vec::new());
    let mut timing = Timing::default();
    for t in start..plan.steps {
        let (epoch, k) = (t / per_epoch, t % per_epoch);
        if order.as_ref().is_none_or(|o| o.0 != epoch) {
            order = Some((epoch, epoch_order(plan.total_rows, plan.seed, epoch as u64)));
        }
        let window =
            &order.as_ref().expect("set above").1[k * plan.batch_size..(k + 1) * plan.batch_size];
        x.clear();
        y.clear();
        let mut n = 0;
        for &r in window {
            if let Some((b, off)) = shard.find(r as usize) {
                let (_, bx, by) = &shard.blocks[b];
                x.extend_from_slice(&bx[off * shard.inputs..(off + 1) * shard.inputs]);
                y.extend_from_slice(&by[off * shard.outputs..(off + 1) * shard.outputs]);
                n += 1;
            }
        }
        timing.rows += n;
        let t0 = Instant::now();
        let loss = model::gradient(
            &model,
            std::mem::take(&mut x),
            std::mem::take(&mut y),
            n,
            denominator,
            &mut flat,
        );
        // The loss rides along with the gradient: one all-reduce per step.
        flat.push(loss);
        let t1 = Instant::now();
        if let Some(r) = ring.as_deref_mut() {
            r.all_reduce_sum(&mut flat).map_err(|e| e.to_string())?;
        }
        let t2 = Instant::now();
        let loss = flat.pop().expect("the loss was pushed");
        model = model::step(model, &mut optim, plan.learning_rate, &flat);
        timing.compute_s += (t1 - t0).as_secs_f64() + t2.elapsed().as_secs_f64();
        timing.all_reduce_s += (t2 - t1).as_secs_f64();
        if !loss.is_finite() {
            return Err(format!(
                "the loss is {loss} at step {t}: lower the learning rate ({}) or scale the data",
                plan.learning_rate
            ));
        }
        each_step(t, loss, &model)?;
    }
    Ok((model, timing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_that_differ() {
        let a = epoch_order(1000, 5, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_ne!(a, epoch_order(1000, 5, 1));
        assert_ne!(a, epoch_order(1000, 6, 0));
        assert_eq!(a, epoch_order(1000, 5, 0));
    }

    #[test]
    fn shards_find_their_rows() {
        let shard = Shard {
            blocks: vec![(0, vec![0.0; 6], vec![0.0; 3]), (10, vec![0.0; 4], vec![0.0; 2])],
            inputs: 2,
            outputs: 1,
        };
        assert_eq!(shard.find(0), Some((0, 0)));
        assert_eq!(shard.find(2), Some((0, 2)));
        assert_eq!(shard.find(3), None);
        assert_eq!(shard.find(11), Some((1, 1)));
        assert_eq!(shard.find(12), None);
    }
}
