//! `performance_report` for local schedulers: every task run of every
//! computation inside it, in one self-contained HTML file.

use rask_core::{op, performance_report, Delayed, Scheduler};

op! {
    fn twice(x: i64) -> i64 { x * 2 }
    fn total(xs: Vec<i64>) -> i64 { xs.iter().sum() }
}

#[test]
fn a_local_report_holds_every_task_of_every_computation() {
    let dir = std::env::temp_dir().join(format!("rask-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.html");
    let (a, b) = performance_report(&path, || {
        let xs: Vec<Delayed<i64>> = (0..20).map(twice).collect();
        let a = total(xs).compute_with(&Scheduler::threads_n(2), &Default::default()).unwrap();
        let b = twice(5).compute_with(&Scheduler::Sync, &Default::default()).unwrap();
        (a, b)
    })
    .unwrap();
    assert_eq!((a, b), (380, 10));
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(html.matches("class=\"run\"").count(), 22, "21 + 1 task runs");
    assert!(html.contains("data-tasks=\"22\""));
    assert!(html.contains("twice") && html.contains("total"));
    assert!(!html.contains("<script"), "self-contained, no scripts");
    std::fs::remove_dir_all(&dir).unwrap();
}
