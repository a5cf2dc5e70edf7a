//! Criterion micro-benchmarks of the graph passes and the local executors on
//! W1's 199,999-task tree (set `RASK_BENCH_LEAVES` to change its size).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rask::bench::w1::{build_chain, build_tree};
use rask::graph::{cull, fuse, inline_data, order};
use rask::{ComputeOptions, Scheduler};

fn leaves() -> usize {
    std::env::var("RASK_BENCH_LEAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn passes(c: &mut Criterion) {
    let n = leaves();
    let mut group = c.benchmark_group(format!("tree_{n}_leaves"));
    group.sample_size(10);
    group.bench_function("build_delayed", |b| b.iter(|| build_tree(n)));
    let (tree, _) = build_tree(n);
    group.bench_function("materialize_graph", |b| b.iter(|| tree.graph()));
    let graph = tree.graph();
    let out = [tree.key().clone()];
    group.bench_function("validate", |b| b.iter(|| graph.validate(&out).unwrap()));
    group.bench_function("order", |b| b.iter(|| order(&graph).unwrap()));
    group.bench_function("cull", |b| b.iter(|| cull(&graph, &out)));
    group.bench_function("fuse", |b| b.iter(|| fuse(&graph, &out)));
    group.bench_function("inline_data", |b| b.iter(|| inline_data(&graph, &out)));
    for s in [Scheduler::Sync, Scheduler::threads()] {
        group.bench_function(format!("execute_graph_{}", s.name()), |b| {
            b.iter_batched(
                || graph.clone(),
                |g| s.execute(g, &out, &ComputeOptions::new()).unwrap(),
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("compute_{}", s.name()), |b| {
            b.iter(|| tree.compute_with(&s, &ComputeOptions::new()).unwrap())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("chain_10000");
    group.sample_size(10);
    let chain = build_chain(10_000);
    for s in [Scheduler::Sync, Scheduler::threads()] {
        group.bench_function(format!("compute_{}", s.name()), |b| {
            b.iter(|| chain.compute_with(&s, &ComputeOptions::new()).unwrap())
        });
        let opts = ComputeOptions::new().with_fuse(true);
        group.bench_function(format!("compute_fused_{}", s.name()), |b| {
            b.iter(|| chain.compute_with(&s, &opts).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, passes);
criterion_main!(benches);
