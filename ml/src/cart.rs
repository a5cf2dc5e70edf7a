//! CART: scikit-learn's best-split trees (`BestSplitter` + `DepthFirstTreeBuilder`),
//! grown on columns sorted once per fit.
//!
//! scikit-learn sorts every candidate feature at every node (n·log n per
//! feature and node). Here each feature's sample order is sorted once; a node
//! owns the same range `[start, end)` of every feature's list, and a split
//! partitions each list stably, so the children's ranges stay sorted. A level
//! of the tree then costs O(n·p) with no log factor, and a forest shares the
//! one sort across all its trees (a bootstrap only filters it).
//!
//! The split rule is scikit-learn's: candidate thresholds lie between
//! consecutive sorted values more than 1e-7 apart, at the midpoint; the best
//! proxy improvement wins (ties: the first feature drawn); features are drawn
//! without replacement until `max_features` non-constant ones are evaluated;
//! a node is a leaf at `max_depth`, below `min_samples_split` (or
//! `2·min_samples_leaf`) samples, or when pure.
//!
//! Like scikit-learn, trees see X rounded to `f32` (its trees' `DTYPE`), in
//! fitting and in prediction, so thresholds are midpoints of the same values.

use ndarray::ArrayView2;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

/// Values closer than this are one value (scikit-learn's `FEATURE_THRESHOLD`).
const FEATURE_THRESHOLD: f64 = 1e-7;
const LEAF: u32 = u32::MAX;

/// What a tree predicts.
pub(crate) enum Target<'a> {
    /// Class indices `0..n_classes`; Gini or entropy impurity.
    Classes { y: &'a [u32], n_classes: usize, entropy: bool },
    /// Real values; squared-error impurity.
    Values(&'a [f64]),
}

impl Target<'_> {
    /// Numbers stored per leaf: class weights, or the mean.
    fn width(&self) -> usize {
        match self {
            Target::Classes { n_classes, .. } => *n_classes,
            Target::Values(_) => 1,
        }
    }
}

/// Growth limits (already validated).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_depth: usize,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub min_impurity_decrease: f64,
    /// Non-constant features evaluated per node (1..=p).
    pub max_features: usize,
}

/// The training matrix by column, with every column's sample order.
pub(crate) struct Columns {
    n: usize,
    p: usize,
    /// Column-major values, rounded to `f32`: feature `f` is `x[f·n .. (f+1)·n]`.
    x: Vec<f32>,
    /// Per feature, the sample ids sorted by value: `order[f·n .. (f+1)·n]`.
    order: Vec<u32>,
}

impl Columns {
    /// Copies `x` by column and sorts each column once.
    pub(crate) fn new(x: ArrayView2<'_, f64>) -> Self {
        let (n, p) = x.dim();
        let mut cols = Vec::with_capacity(n * p);
        for f in 0..p {
            cols.extend(x.column(f).iter().map(|&v| v as f32));
        }
        let mut order = Vec::with_capacity(n * p);
        for f in 0..p {
            let col = &cols[f * n..(f + 1) * n];
            let start = order.len();
            order.extend(0..n as u32);
            order[start..].sort_unstable_by(|&a, &b| col[a as usize].total_cmp(&col[b as usize]));
        }
        Columns { n, p, x: cols, order }
    }
}

/// One node: a split, or a leaf (`feature == LEAF`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Node {
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
}

/// A grown tree: nodes in depth-first order, `width` values per node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    values: Vec<f64>,
    width: usize,
}

impl Tree {
    /// The leaf values reached by one row (`x <= threshold` goes left, with x
    /// rounded to `f32` as in fitting).
    pub(crate) fn leaf_values(&self, row: impl Fn(usize) -> f64) -> &[f64] {
        let mut i = 0usize;
        loop {
            let node = &self.nodes[i];
            if node.feature == LEAF {
                return &self.values[i * self.width..(i + 1) * self.width];
            }
            let v = row(node.feature as usize) as f32 as f64;
            i = if v <= node.threshold { node.left } else { node.right } as usize;
        }
    }

    /// Scales every node's class weights to proportions (forests average those).
    pub(crate) fn normalize(&mut self) {
        for v in self.values.chunks_mut(self.width) {
            let total: f64 = v.iter().sum();
            if total > 0.0 {
                v.iter_mut().for_each(|c| *c /= total);
            }
        }
    }

    /// Every node's split in depth-first order (left child first, as
    /// scikit-learn numbers them); `None` for a leaf.
    pub(crate) fn splits(&self) -> Vec<Option<(usize, f64)>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let node = &self.nodes[i];
            if node.feature == LEAF {
                out.push(None);
            } else {
                out.push(Some((node.feature as usize, node.threshold)));
                stack.push(node.right as usize);
                stack.push(node.left as usize);
            }
        }
        out
    }

    /// Number of nodes.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Depth of the deepest leaf (a lone root has depth 0).
    pub(crate) fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, d)) = stack.pop() {
            let node = &self.nodes[i];
            if node.feature == LEAF {
                deepest = deepest.max(d);
            } else {
                stack.push((node.left as usize, d + 1));
                stack.push((node.right as usize, d + 1));
            }
        }
        deepest
    }
}

/// Node statistics over the weighted samples in a range.
struct Stats {
    weight: f64,
    /// Class weights (classification) or `[Σwy, Σwy²]` (regression).
    sums: Vec<f64>,
}

impl Stats {
    fn of(target: &Target<'_>, weights: &[f64], samples: &[u32]) -> Self {
        let mut weight = 0.0;
        let sums = match target {
            Target::Classes { y, n_classes, .. } => {
                let mut c = vec![0.0; *n_classes];
                for &s in samples {
                    let w = weights[s as usize];
                    c[y[s as usize] as usize] += w;
                    weight += w;
                }
                c
            }
            Target::Values(y) => {
                let (mut sum, mut sq) = (0.0, 0.0);
                for &s in samples {
                    let (w, v) = (weights[s as usize], y[s as usize]);
                    sum += w * v;
                    sq += w * v * v;
                    weight += w;
                }
                vec![sum, sq]
            }
        };
        Stats { weight, sums }
    }

    /// The node's impurity, as scikit-learn's criteria define it.
    fn impurity(&self, target: &Target<'_>) -> f64 {
        let w = self.weight;
        match target {
            Target::Classes { entropy: false, .. } => {
                1.0 - self.sums.iter().map(|c| c * c).sum::<f64>() / (w * w)
            }
            Target::Classes { entropy: true, .. } => {
                self.sums.iter().filter(|&&c| c > 0.0).map(|&c| -(c / w) * (c / w).log2()).sum()
            }
            Target::Values(_) => {
                let mean = self.sums[0] / w;
                self.sums[1] / w - mean * mean
            }
        }
    }

    /// What a leaf stores: class weights, or the mean.
    fn leaf_value(&self, target: &Target<'_>) -> Vec<f64> {
        match target {
            Target::Classes { .. } => self.sums.clone(),
            Target::Values(_) => vec![self.sums[0] / self.weight],
        }
    }
}

/// The best split found at a node.
struct Split {
    feature: usize,
    /// Samples going left: the first `pos` of the feature's sorted range.
    pos: usize,
    threshold: f64,
    proxy: f64,
}

/// A node waiting to be grown.
struct Frame {
    start: usize,
    end: usize,
    depth: usize,
    parent: Option<(usize, bool)>,
}

/// Grows one tree on the samples with positive weight (a bootstrap's counts,
/// or all ones).
pub(crate) fn grow(
    cols: &Columns,
    target: &Target<'_>,
    weights: &[f64],
    limits: &Limits,
    rng: &mut Xoshiro256PlusPlus,
) -> Tree {
    let (n, p) = (cols.n, cols.p);
    // Every feature's sorted list, restricted to the weighted samples.
    let m = weights.iter().filter(|&&w| w > 0.0).count();
    let mut lists = Vec::with_capacity(m * p);
    for f in 0..p {
        lists.extend(cols.order[f * n..(f + 1) * n].iter().filter(|&&s| weights[s as usize] > 0.0));
    }
    let root_weight: f64 = weights.iter().sum();
    let mut grower = Grower {
        cols,
        target,
        weights,
        limits,
        m,
        lists,
        went_left: vec![LEAF; n],
        scratch: vec![0; m],
        features: (0..p).collect(),
        left: vec![0.0; target.width()],
    };
    let mut tree = Tree { nodes: Vec::new(), values: Vec::new(), width: target.width() };
    let mut stack = vec![Frame { start: 0, end: m, depth: 0, parent: None }];
    while let Some(frame) = stack.pop() {
        let id = tree.nodes.len();
        if let Some((parent, is_left)) = frame.parent {
            let node = &mut tree.nodes[parent];
            if is_left {
                node.left = id as u32;
            } else {
                node.right = id as u32;
            }
        }
        let stats = Stats::of(target, weights, &grower.lists[frame.start..frame.end]);
        let impurity = stats.impurity(target);
        let n_node = frame.end - frame.start;
        let is_leaf = frame.depth >= limits.max_depth
            || n_node < limits.min_samples_split
            || n_node < 2 * limits.min_samples_leaf
            || impurity <= f64::EPSILON;
        let split =
            if is_leaf { None } else { grower.best_split(&frame, &stats, rng) }.filter(|s| {
                limits.min_impurity_decrease <= 0.0
                    || grower.improvement(&frame, s, &stats, impurity, root_weight) + f64::EPSILON
                        >= limits.min_impurity_decrease
            });
        tree.values.extend(stats.leaf_value(target));
        match split {
            None => tree.nodes.push(Node { feature: LEAF, threshold: 0.0, left: 0, right: 0 }),
            Some(s) => {
                tree.nodes.push(Node {
                    feature: s.feature as u32,
                    threshold: s.threshold,
                    left: 0,
                    right: 0,
                });
                grower.partition(&frame, &s, id as u32);
                let mid = frame.start + s.pos;
                let depth = frame.depth + 1;
                // Right first, so the left child is grown (and numbered) first.
                stack.push(Frame { start: mid, end: frame.end, depth, parent: Some((id, false)) });
                stack.push(Frame { start: frame.start, end: mid, depth, parent: Some((id, true)) });
            }
        }
    }
    tree
}

/// Working state of one tree's growth.
struct Grower<'a> {
    cols: &'a Columns,
    target: &'a Target<'a>,
    weights: &'a [f64],
    limits: &'a Limits,
    /// Samples in the tree (positive weight).
    m: usize,
    /// Per feature, the tree's samples in value order; a node owns one range of each.
    lists: Vec<u32>,
    /// The id of the last node whose split sent this sample left.
    went_left: Vec<u32>,
    scratch: Vec<u32>,
    /// A permutation of the features, redrawn lazily per node (Fisher–Yates).
    features: Vec<usize>,
    /// Left-side class weights during a scan.
    left: Vec<f64>,
}

impl Grower<'_> {
    fn range(&self, f: usize, frame: &Frame) -> &[u32] {
        &self.lists[f * self.m + frame.start..f * self.m + frame.end]
    }

    fn column(&self, f: usize) -> &[f32] {
        &self.cols.x[f * self.cols.n..(f + 1) * self.cols.n]
    }

    fn best_split(
        &mut self,
        frame: &Frame,
        stats: &Stats,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Option<Split> {
        let mut best: Option<Split> = None;
        let mut remaining = self.features.len();
        let mut evaluated = 0;
        while remaining > 0 && evaluated < self.limits.max_features {
            let j = rng.gen_range(0..remaining);
            remaining -= 1;
            self.features.swap(j, remaining);
            let f = self.features[remaining];
            let (col, samples) = (self.column(f), self.range(f, frame));
            if col[samples[samples.len() - 1] as usize] as f64
                <= col[samples[0] as usize] as f64 + FEATURE_THRESHOLD
            {
                continue; // constant here: not counted, as in scikit-learn
            }
            evaluated += 1;
            let found = match self.target {
                Target::Classes { y, entropy, .. } => {
                    let mut left = std::mem::take(&mut self.left);
                    let s = self.scan_classes(f, frame, stats, y, *entropy, &mut left);
                    self.left = left;
                    s
                }
                Target::Values(y) => self.scan_values(f, frame, stats, y),
            };
            if let Some(s) = found {
                if best.as_ref().is_none_or(|b| s.proxy > b.proxy) {
                    best = Some(s);
                }
            }
        }
        best
    }

    /// Whether a split may fall after sorted position `i` (0-based within the
    /// range), and its threshold.
    fn candidate(&self, col: &[f32], samples: &[u32], i: usize) -> Option<f64> {
        let (v, next) = (col[samples[i] as usize] as f64, col[samples[i + 1] as usize] as f64);
        let n_left = i + 1;
        let min_leaf = self.limits.min_samples_leaf;
        if next <= v + FEATURE_THRESHOLD || n_left < min_leaf || samples.len() - n_left < min_leaf {
            return None;
        }
        let t = v / 2.0 + next / 2.0;
        Some(if t == next || t.is_infinite() { v } else { t })
    }

    fn scan_classes(
        &self,
        f: usize,
        frame: &Frame,
        stats: &Stats,
        y: &[u32],
        entropy: bool,
        left: &mut [f64],
    ) -> Option<Split> {
        let (col, samples) = (self.column(f), self.range(f, frame));
        let total = &stats.sums;
        left.fill(0.0);
        let (mut wl, mut sq_left) = (0.0, 0.0);
        let mut sq_right: f64 = total.iter().map(|c| c * c).sum();
        let mut best: Option<Split> = None;
        for i in 0..samples.len() - 1 {
            let s = samples[i] as usize;
            let (w, c) = (self.weights[s], y[s] as usize);
            let (lc, rc) = (left[c], total[c] - left[c]);
            // (lc+w)² − lc² and (rc−w)² − rc², so each step is O(1).
            sq_left += w * (2.0 * lc + w);
            sq_right += w * (w - 2.0 * rc);
            left[c] = lc + w;
            wl += w;
            let Some(threshold) = self.candidate(col, samples, i) else { continue };
            let wr = stats.weight - wl;
            let proxy = if entropy {
                let side = |counts: &mut dyn Iterator<Item = f64>, w: f64| {
                    counts.filter(|&c| c > 0.0).map(|c| c * (c / w).log2()).sum::<f64>()
                };
                side(&mut left.iter().copied(), wl)
                    + side(&mut total.iter().zip(left.iter()).map(|(t, l)| t - l), wr)
            } else {
                sq_left / wl + sq_right / wr
            };
            if best.as_ref().is_none_or(|b| proxy > b.proxy) {
                best = Some(Split { feature: f, pos: i + 1, threshold, proxy });
            }
        }
        best
    }

    fn scan_values(&self, f: usize, frame: &Frame, stats: &Stats, y: &[f64]) -> Option<Split> {
        let (col, samples) = (self.column(f), self.range(f, frame));
        let sum = stats.sums[0];
        let (mut wl, mut sl) = (0.0, 0.0);
        let mut best: Option<Split> = None;
        for i in 0..samples.len() - 1 {
            let s = samples[i] as usize;
            let w = self.weights[s];
            wl += w;
            sl += w * y[s];
            let Some(threshold) = self.candidate(col, samples, i) else { continue };
            let sr = sum - sl;
            let proxy = sl * sl / wl + sr * sr / (stats.weight - wl);
            if best.as_ref().is_none_or(|b| proxy > b.proxy) {
                best = Some(Split { feature: f, pos: i + 1, threshold, proxy });
            }
        }
        best
    }

    /// scikit-learn's weighted impurity decrease of a split (for `min_impurity_decrease`).
    fn improvement(
        &self,
        frame: &Frame,
        split: &Split,
        stats: &Stats,
        impurity: f64,
        root_weight: f64,
    ) -> f64 {
        let samples = self.range(split.feature, frame);
        let left = Stats::of(self.target, self.weights, &samples[..split.pos]);
        let right = Stats::of(self.target, self.weights, &samples[split.pos..]);
        let w = stats.weight;
        (w / root_weight)
            * (impurity
                - left.weight / w * left.impurity(self.target)
                - right.weight / w * right.impurity(self.target))
    }

    /// Splits the node's range of every feature's list, stably: left samples
    /// first, each side still in value order.
    fn partition(&mut self, frame: &Frame, split: &Split, id: u32) {
        let m = self.m;
        let chosen = split.feature * m + frame.start;
        for &s in &self.lists[chosen..chosen + split.pos] {
            self.went_left[s as usize] = id;
        }
        for f in 0..self.cols.p {
            if f == split.feature {
                continue; // already in order: the first `pos` are the left side
            }
            let range = &mut self.lists[f * m + frame.start..f * m + frame.end];
            let (mut l, mut r) = (0, 0);
            for i in 0..range.len() {
                let s = range[i];
                if self.went_left[s as usize] == id {
                    range[l] = s;
                    l += 1;
                } else {
                    self.scratch[r] = s;
                    r += 1;
                }
            }
            range[l..].copy_from_slice(&self.scratch[..r]);
        }
    }
}
