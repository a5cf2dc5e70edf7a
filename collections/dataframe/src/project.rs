//! Projection pushdown: a CSV read parses only the columns its consumers
//! use, found when the graph is computed (as dask-expr turns a projection
//! into `usecols`, and polars' `scan_csv` pushes it into the scan).
//!
//! It runs on the whole graph of one [`compute_frames`](crate::compute_frames)
//! call, so two group-bys sharing one read (W7's `g1` and `g2`) get the
//! union of their columns from one parse. Only consumers whose column use
//! is known take part: group-by stages, per-partition steps (walked back
//! from their own consumers), `height` and `to_block`. Any other consumer,
//! a read that is itself an output, or an expression with a selector keeps
//! the read whole.
//!
//! A projected read gets a new key (its value differs); its consumers keep
//! theirs, since their values do not change.

use std::collections::BTreeSet;

use polars::prelude::Expr;
use rask_core::key::TokenHasher;
use rask_core::{Arg, Graph, Key, Node, Task, Value};
use rustc_hash::FxHashMap;

use crate::frame::Wire;
use crate::groupby::AggPlan;
use crate::io::CsvSpec;
use crate::{ops, Step};

/// Column names a value needs; `None`: all of them (or not known).
type Need = Option<BTreeSet<String>>;

/// Narrows every CSV read of `graph` to the columns its consumers use.
/// `outputs` are the keys the caller asks for (kept whole).
pub(crate) fn project_reads(graph: &mut Graph, outputs: &[Key]) {
    let reads: Vec<Key> = graph
        .iter()
        .filter(|(_, n)| matches!(n, Node::Task(t) if is_op(t, ops::read_csv_block::OP.name)))
        .map(|(k, _)| k.clone())
        .collect();
    if reads.is_empty() {
        return;
    }
    let dependents = graph.dependents();
    let mut needs = Needs { graph, dependents: &dependents, outputs, memo: FxHashMap::default() };
    let mut renamed: Vec<(Key, Key, Task)> = Vec::new();
    for read in reads {
        let Some(need) = needs.of(&read) else { continue };
        let Some(Node::Task(task)) = graph.get(&read) else { continue };
        if let Some(projected) = narrowed(task, &need) {
            let mut h = TokenHasher::new();
            h.str("rask-dataframe::project").key(&read);
            let cols = projected.1;
            for c in &cols {
                h.str(c);
            }
            let key = Key::new(read.prefix(), h.finish()).with_index(read.index().to_vec());
            renamed.push((read, key, projected.0));
        }
    }
    for (old, new, task) in renamed {
        graph.remove(&old);
        graph.insert(new.clone(), Node::Task(task));
        for d in dependents.get(&old).into_iter().flatten() {
            if let Some(Node::Task(t)) = graph.get(d) {
                let mut t = t.clone();
                t.args.iter_mut().for_each(|a| rename(a, &old, &new));
                graph.insert(d.clone(), Node::Task(t));
            }
        }
    }
}

/// The read task with only the needed columns (file order; a projection the
/// caller gave is kept, narrowed), and those columns; `None` when nothing
/// would be dropped.
fn narrowed(task: &Task, need: &BTreeSet<String>) -> Option<(Task, Vec<String>)> {
    let Arg::Literal(v) = task.args.get(3)? else { return None };
    let spec = v.downcast_ref::<CsvSpec>()?;
    let have: Vec<String> = match &spec.columns {
        Some(c) => c.clone(),
        None => spec.schema.0.iter_names().map(|n| n.to_string()).collect(),
    };
    let mut keep: Vec<String> = have.iter().filter(|c| need.contains(*c)).cloned().collect();
    if keep.is_empty() {
        // Rows still count (`height`, `len()`): the first column carries them.
        keep = have.iter().take(1).cloned().collect();
    }
    if keep.len() == have.len() {
        return None;
    }
    let spec = CsvSpec { columns: Some(keep.clone()), ..spec.clone() };
    let mut args = task.args.clone();
    args[3] = Arg::Literal(Value::new(spec));
    Some((Task::new(task.op.clone(), args), keep))
}

fn rename(arg: &mut Arg, old: &Key, new: &Key) {
    match arg {
        Arg::Key(k) if k == old => *k = new.clone(),
        Arg::List(items) => items.iter_mut().for_each(|a| rename(a, old, new)),
        _ => {}
    }
}

fn is_op(task: &Task, name: &str) -> bool {
    task.op.name() == name
}

/// What each key's consumers need of its value, memoized.
struct Needs<'g> {
    graph: &'g Graph,
    dependents: &'g FxHashMap<Key, Vec<Key>>,
    outputs: &'g [Key],
    memo: FxHashMap<Key, Need>,
}

impl Needs<'_> {
    /// The union of what the consumers of `key` use of it.
    fn of(&mut self, key: &Key) -> Need {
        if let Some(n) = self.memo.get(key) {
            return n.clone();
        }
        // A cycle cannot occur in a valid graph; "all" is the safe answer anyway.
        self.memo.insert(key.clone(), None);
        let need = if self.outputs.contains(key) {
            None
        } else {
            let consumers = self.dependents.get(key).cloned().unwrap_or_default();
            let mut all = Some(BTreeSet::new());
            for c in consumers {
                match (self.consumer(&c), &mut all) {
                    (Some(n), Some(acc)) => acc.extend(n),
                    _ => {
                        all = None;
                        break;
                    }
                }
            }
            all
        };
        self.memo.insert(key.clone(), need.clone());
        need
    }

    /// What the task at `key` uses of its frame input.
    fn consumer(&mut self, key: &Key) -> Need {
        let Some(Node::Task(t)) = self.graph.get(key) else { return None };
        let name = t.op.name();
        let literal = |i: usize| match t.args.get(i) {
            Some(Arg::Literal(v)) => Some(v),
            _ => None,
        };
        if name == ops::agg_partial::OP.name || name == ops::agg_finish::OP.name {
            // With a split plan, these take the frame's rows (partial) or
            // partials (finish, never a read); without, a partial passes
            // the frame on whole, and finish groups the raw rows.
            let plan = &literal(1)?.downcast_ref::<Wire<AggPlan>>()?.0;
            let raw = (name == ops::agg_partial::OP.name) == plan.split.is_some();
            return if raw { plan_columns(plan) } else { None };
        }
        if name == ops::agg_lift::OP.name {
            return plan_columns(&literal(1)?.downcast_ref::<Wire<AggPlan>>()?.0);
        }
        if name == ops::apply::OP.name {
            let steps = literal(1)?.downcast_ref::<Wire<Vec<Step>>>()?.0.clone();
            let after = self.of(key);
            return steps_need(&steps, after);
        }
        if name == ops::height::OP.name {
            return Some(BTreeSet::new());
        }
        if name == ops::to_block::OP.name {
            return Some(literal(1)?.downcast_ref::<Vec<String>>()?.iter().cloned().collect());
        }
        None
    }
}

/// The columns a group-by's keys and aggregations read.
fn plan_columns(plan: &AggPlan) -> Need {
    leaves(plan.keys.iter().chain(&plan.aggs))
}

/// What `steps` need of their input for `after` of their output, walking
/// back from the last step.
fn steps_need(steps: &[Step], after: Need) -> Need {
    let mut need = after;
    for step in steps.iter().rev() {
        need = match step {
            // A select makes a new frame: only its expressions' inputs count.
            Step::Select(exprs) => leaves(exprs),
            Step::WithColumns(exprs) => union(need, leaves(exprs)),
            Step::Filter(p) => union(need, leaves([p])),
            Step::Sort(by, _) => union(need, Some(by.iter().cloned().collect())),
            Step::Unique(Some(subset)) => union(need, Some(subset.iter().cloned().collect())),
            // Deduplicating whole rows depends on every column (a select
            // before it still narrows what comes in).
            Step::Unique(None) => None,
        };
    }
    need
}

fn union(a: Need, b: Need) -> Need {
    let (mut a, b) = (a?, b?);
    a.extend(b);
    Some(a)
}

/// The columns `exprs` read, or `None` where one refers to columns other
/// than by name (a selector: `all()`, `cols(..)`, by dtype) or in a type
/// expression.
fn leaves<'e>(exprs: impl IntoIterator<Item = &'e Expr>) -> Need {
    let mut out = BTreeSet::new();
    for e in exprs {
        for node in e {
            match node {
                Expr::Column(name) => {
                    out.insert(name.to_string());
                }
                Expr::Selector(_) | Expr::DataTypeFunction(_) | Expr::SubPlan(..) => return None,
                Expr::Cast { dtype, .. }
                    if !matches!(dtype, polars_plan::dsl::DataTypeExpr::Literal(_)) =>
                {
                    return None
                }
                _ => {}
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{all, col, lit};

    fn names(n: Need) -> Option<Vec<String>> {
        n.map(|s| s.into_iter().collect())
    }

    fn v(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn expressions_name_their_columns() {
        assert_eq!(names(leaves([&(col("a") + col("b")).alias("c")])), v(&["a", "b"]));
        assert_eq!(names(leaves([&col("a").sum().over([col("g")]).unwrap()])), v(&["a", "g"]));
        assert_eq!(names(leaves([&all().as_expr().sum()])), None);
        assert_eq!(names(leaves([&lit(1)])), v(&[]));
    }

    #[test]
    fn steps_walk_back_from_what_follows() {
        let select = Step::Select(vec![col("a"), (col("b") * lit(2)).alias("x")]);
        let filter = Step::Filter(col("c").gt(lit(0)));
        let with = Step::WithColumns(vec![(col("d") + lit(1)).alias("e")]);
        // filter, then select: the filter's column and the selected ones.
        assert_eq!(names(steps_need(&[filter.clone(), select.clone()], None)), v(&["a", "b", "c"]));
        // with_columns, then what follows asks for "e" and "a".
        let after = Some(["e", "a"].map(String::from).into_iter().collect());
        assert_eq!(names(steps_need(std::slice::from_ref(&with), after)), v(&["a", "d", "e"]));
        // Unknown downstream and no select: everything.
        assert_eq!(names(steps_need(std::slice::from_ref(&filter), None)), None);
        // A whole-row dedup before the select needs every column.
        assert_eq!(names(steps_need(&[Step::Unique(None), select.clone()], None)), None);
        // ... after it, only the selected ones.
        assert_eq!(names(steps_need(&[select, Step::Unique(None)], None)), v(&["a", "b"]));
    }

    /// The columns each CSV read of `graph` parses (`None`: all).
    fn read_columns(graph: &Graph) -> Vec<Option<Vec<String>>> {
        graph
            .iter()
            .filter_map(|(_, n)| match n {
                Node::Task(t) if is_op(t, ops::read_csv_block::OP.name) => match &t.args[3] {
                    Arg::Literal(v) => Some(v.downcast_ref::<CsvSpec>().unwrap().columns.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn projected(frames: &[&crate::DataFrame]) -> Graph {
        let parts: Vec<_> = frames.iter().flat_map(|f| f.partitions()).collect();
        let erased: Vec<_> = parts.iter().map(rask_core::Delayed::erase).collect();
        let keys: Vec<Key> = erased.iter().map(|d| d.key().clone()).collect();
        let mut graph = rask_core::delayed::graph_of(&erased);
        project_reads(&mut graph, &keys);
        graph.validate(&keys).unwrap();
        graph
    }

    #[test]
    fn a_shared_read_parses_the_union_of_its_consumers_columns() {
        use polars::prelude::{CsvReadOptions, IntoLazy, SerReader, SortMultipleOptions};
        let dir = tempfile::tempdir().unwrap();
        for f in 0..3 {
            let mut text = String::from("id,key,value,category,note\n");
            for i in 0..200 {
                let r = f * 1000 + i;
                text += &format!("{r},{},{}.25,cat_{},n{r}\n", r % 7, r % 13, r % 3);
            }
            std::fs::write(dir.path().join(format!("t{f}.csv")), text).unwrap();
        }
        let pattern = dir.path().join("*.csv").display().to_string();
        let options = crate::CsvOptions { blocksize: Some(1500), ..Default::default() };
        let df = crate::read_csv(&[&pattern], &options).unwrap();
        let g1 =
            df.group_by(["key"]).agg([col("value").sum(), col("value").mean().alias("m")]).unwrap();
        let g2 = df.group_by(["category"]).agg([col("value").max()]).unwrap();
        let cols = read_columns(&projected(&[&g1, &g2]));
        assert!(cols.len() > 3, "several blocks per file");
        assert!(
            cols.iter()
                .all(|c| c.as_deref() == Some(&v(&["key", "value", "category"]).unwrap()[..])),
            "{cols:?}"
        );

        // The results equal polars' on the whole files.
        let out = crate::compute_frames(&[&g1, &g2]).unwrap();
        let mut whole = Vec::new();
        for f in 0..3 {
            let path = dir.path().join(format!("t{f}.csv"));
            whole.push(
                CsvReadOptions::default()
                    .try_into_reader_with_file_path(Some(path))
                    .unwrap()
                    .finish()
                    .unwrap(),
            );
        }
        let mut all_rows = whole.remove(0);
        for w in whole {
            all_rows.vstack_mut_owned(w).unwrap();
        }
        let want1 = all_rows
            .clone()
            .lazy()
            .group_by([col("key")])
            .agg([col("value").sum(), col("value").mean().alias("m")])
            .sort(["key"], SortMultipleOptions::default())
            .collect()
            .unwrap();
        assert!(out[0].equals_missing(&want1), "{}\n{want1}", out[0]);
        assert_eq!(out[1].height(), 3);

        // Steps before a group-by: the filter's column joins the projection.
        let f = df.filter(col("id").gt(lit(100))).unwrap();
        let g3 = f.group_by(["key"]).agg([col("value").sum()]).unwrap();
        let cols = read_columns(&projected(&[&g3]));
        assert!(
            cols.iter().all(|c| c.as_deref() == Some(&v(&["id", "key", "value"]).unwrap()[..])),
            "{cols:?}"
        );

        // A row count parses one column; a select, its inputs.
        let n = df.select([col("note")]).unwrap();
        assert!(read_columns(&projected(&[&n]))
            .iter()
            .all(|c| c.as_deref() == Some(&v(&["note"]).unwrap()[..])));
        let lens: Vec<_> = df.partitions().iter().map(ops::height).collect();
        let erased: Vec<_> = lens.iter().map(rask_core::Delayed::erase).collect();
        let keys: Vec<Key> = erased.iter().map(|d| d.key().clone()).collect();
        let mut graph = rask_core::delayed::graph_of(&erased);
        project_reads(&mut graph, &keys);
        assert!(read_columns(&graph)
            .iter()
            .all(|c| c.as_deref() == Some(&v(&["id"]).unwrap()[..])));
        assert_eq!(df.len().compute().unwrap(), 600);

        // Asked for whole, or through a whole-row dedup: nothing is dropped.
        assert!(read_columns(&projected(&[&df])).iter().all(Option::is_none));
        let d =
            df.drop_duplicates(None).unwrap().group_by(["key"]).agg([col("value").sum()]).unwrap();
        assert!(read_columns(&projected(&[&d])).iter().all(Option::is_none));
    }
}
