//! Which worker trains on which row blocks: pure functions of the blocks'
//! holders and sizes, so the choices are tested without a cluster.

/// Gang ranks for training blocks: each worker keeps the blocks it holds
/// (blocks whose holder is unknown or gone go to the least loaded worker),
/// then the biggest block that lowers the maximum load moves from the most
/// to the least loaded worker, until no move does. Workers that end up with
/// no block are left out. Ranks are ordered by worker address; each lists
/// its block indices in order.
pub fn assign(blocks: &[(Option<String>, u64)], workers: &[String]) -> Vec<(String, Vec<usize>)> {
    let mut workers: Vec<String> = workers.to_vec();
    workers.sort();
    workers.dedup();
    if workers.is_empty() || blocks.is_empty() {
        return Vec::new();
    }
    let mut owner: Vec<usize> = vec![usize::MAX; blocks.len()];
    let mut load = vec![0u64; workers.len()];
    for (i, (holder, bytes)) in blocks.iter().enumerate() {
        if let Some(w) = holder.as_ref().and_then(|h| workers.iter().position(|w| w == h)) {
            owner[i] = w;
            load[w] += bytes;
        }
    }
    let mut homeless: Vec<usize> = (0..blocks.len()).filter(|&i| owner[i] == usize::MAX).collect();
    homeless.sort_by_key(|&i| std::cmp::Reverse(blocks[i].1));
    for i in homeless {
        let w = argmin(&load);
        owner[i] = w;
        load[w] += blocks[i].1;
    }
    // Each move strictly lowers the pair's maximum, so this ends; the bound
    // is a guard.
    for _ in 0..blocks.len() * workers.len() {
        let (heavy, light) = (argmax(&load), argmin(&load));
        let gap = load[heavy] - load[light];
        let best = (0..blocks.len())
            .filter(|&i| owner[i] == heavy && blocks[i].1 > 0 && blocks[i].1 < gap)
            .max_by_key(|&i| (blocks[i].1, std::cmp::Reverse(i)));
        let Some(i) = best else { break };
        owner[i] = light;
        load[heavy] -= blocks[i].1;
        load[light] += blocks[i].1;
    }
    workers
        .into_iter()
        .enumerate()
        .map(|(w, addr)| (addr, (0..blocks.len()).filter(|&i| owner[i] == w).collect::<Vec<_>>()))
        .filter(|(_, b)| !b.is_empty())
        .collect()
}

/// Evaluation blocks over the gang's ranks (by index into `ranks`): blocks
/// stay on their holder's rank where it is in the gang, the rest go to the
/// least loaded rank, and then blocks move as in [`assign`] to balance
/// bytes, including onto ranks that hold none. A rank can end up empty only
/// when there are fewer blocks than ranks.
pub fn spread(blocks: &[(Option<String>, u64)], ranks: &[String]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); ranks.len()];
    if ranks.is_empty() {
        return out;
    }
    let mut owner = vec![usize::MAX; blocks.len()];
    let mut load = vec![0u64; ranks.len()];
    for (i, (holder, bytes)) in blocks.iter().enumerate() {
        if let Some(r) = holder.as_ref().and_then(|h| ranks.iter().position(|w| w == h)) {
            owner[i] = r;
            load[r] += bytes;
        }
    }
    for i in 0..blocks.len() {
        if owner[i] == usize::MAX {
            let r = argmin_count(&load, &owner);
            owner[i] = r;
            load[r] += blocks[i].1;
        }
    }
    // Every rank needs a block: move from ranks with several.
    loop {
        let counts: Vec<usize> =
            (0..ranks.len()).map(|r| owner.iter().filter(|&&o| o == r).count()).collect();
        let Some(empty) = counts.iter().position(|&c| c == 0) else { break };
        let Some(donor) = (0..ranks.len()).filter(|&r| counts[r] > 1).max_by_key(|&r| load[r])
        else {
            break;
        };
        let i = (0..blocks.len())
            .filter(|&i| owner[i] == donor)
            .min_by_key(|&i| blocks[i].1)
            .expect("the donor has blocks");
        owner[i] = empty;
        load[donor] -= blocks[i].1;
        load[empty] += blocks[i].1;
    }
    for (i, &r) in owner.iter().enumerate() {
        out[r].push(i);
    }
    out
}

fn argmin(v: &[u64]) -> usize {
    (0..v.len()).min_by_key(|&i| (v[i], i)).expect("not empty")
}

fn argmax(v: &[u64]) -> usize {
    (0..v.len()).max_by_key(|&i| (v[i], std::cmp::Reverse(i))).expect("not empty")
}

fn argmin_count(load: &[u64], owner: &[usize]) -> usize {
    (0..load.len())
        .min_by_key(|&r| (owner.iter().filter(|&&o| o == r).count(), load[r], r))
        .expect("not empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(w: &str, bytes: u64) -> (Option<String>, u64) {
        (Some(w.to_string()), bytes)
    }

    fn ws(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blocks_stay_where_they_are_when_balanced() {
        let blocks = [at("a", 10), at("b", 10), at("a", 10), at("b", 10)];
        assert_eq!(
            assign(&blocks, &ws(&["b", "a"])),
            vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1, 3])]
        );
    }

    #[test]
    fn a_worker_without_blocks_is_left_out_when_nothing_can_move() {
        // Two blocks, three workers: the third gets nothing and is not a rank.
        let blocks = [at("a", 10), at("b", 10)];
        assert_eq!(assign(&blocks, &ws(&["a", "b", "c"])).len(), 2);
        // Very unbalanced blocks stay put: moving the big one would not help.
        let blocks = [at("a", 1000), at("b", 1)];
        assert_eq!(
            assign(&blocks, &ws(&["a", "b"])),
            vec![("a".to_string(), vec![0]), ("b".to_string(), vec![1])]
        );
    }

    #[test]
    fn load_moves_from_heavy_to_empty_workers_by_bytes() {
        let blocks = [at("a", 10), at("a", 10), at("a", 10), at("a", 10)];
        let plan = assign(&blocks, &ws(&["a", "b"]));
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].1.len(), 2);
        assert_eq!(plan[1].1.len(), 2);
        // Blocks of a lost holder are placed on the lightest worker.
        let blocks = [at("a", 30), (None, 10), at("gone", 10)];
        let plan = assign(&blocks, &ws(&["a", "b"]));
        assert_eq!(plan, vec![("a".to_string(), vec![0]), ("b".to_string(), vec![1, 2])]);
    }

    #[test]
    fn every_rank_gets_evaluation_rows_when_there_are_enough_blocks() {
        let blocks = [at("a", 5), at("a", 5), at("a", 5)];
        let per = spread(&blocks, &ws(&["a", "b"]));
        assert!(per.iter().all(|b| !b.is_empty()), "{per:?}");
        let per = spread(&[at("a", 5)], &ws(&["a", "b"]));
        assert_eq!(per, vec![vec![0], vec![]]);
    }
}
